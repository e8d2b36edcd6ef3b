package cli

// The operator's explicit permission to run the vm tier without KVM, on
// rung up, rung agent, rung demo and rung run.
const (
	allowEmulatedVMFlag = "allow-emulated-vm"
	allowEmulatedVMHelp = "run the vm tier under TCG emulation when KVM is missing: for tests only, NOT a security boundary " +
		"(node status, rung verify and the dashboard say so)"
)
