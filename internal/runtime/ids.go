package runtime

// ValidID reports whether id is a container ID every driver accepts: it
// names paths, so no "..", no separators, at most 128 characters (the vm
// driver uses the same rule).
func ValidID(id string) bool { return validID(id) }
