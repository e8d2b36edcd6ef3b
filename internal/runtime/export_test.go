package runtime

// DetachLogs stops this driver's copier of id and leaves the FIFOs as they
// are, as the death of the agent process would.
func (d *OCI) DetachLogs(id string) {
	if c := d.copierOf(id); c != nil {
		c.stop()
	}
}

// OthersCanExec is othersCanExec, for tests.
var OthersCanExec = othersCanExec
