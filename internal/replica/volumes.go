package replica

// VolumeMount asks for a tenant's volume in the replica (internal/volume
// mounts it). Name is the volume on the node: the Volume's, or a
// perReplica instance's "NAME-ORD"; UID is the control plane's id of the
// Volume, so that one deleted and made again never gets the old data.
type VolumeMount struct {
	Name      string `json:"name"`
	UID       string `json:"uid,omitempty"`
	MountPath string `json:"mountPath"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
	// Size in bytes, used when the volume is created here.
	Size int64 `json:"size"`
}
