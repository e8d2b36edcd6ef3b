package cli

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"

	v1 "rung.dev/rung/api/v1"
	"rung.dev/rung/internal/plugins"
	"rung.dev/rung/internal/policy"
	"rung.dev/rung/internal/replica"
	"rung.dev/rung/internal/runtime"
	"rung.dev/rung/internal/runtime/microvm"
	"rung.dev/rung/internal/tenancy"
	"rung.dev/rung/internal/topology"
)

func newRunCmd() *cobra.Command {
	var (
		dataDir, tenant, tier, cpu, memory, block string
		allowEmulated                             bool
		pids                                      int64
		env, caps                                 []string
	)
	cmd := &cobra.Command{
		Use:   "run --tenant T [--tier TIER] IMAGE [-- CMD...]",
		Short: "Run one replica to completion with the hardening of its tier",
		Long: `Runs IMAGE once as tenant T: unpacks it into a rootfs owned by the
tenant's UID range, builds a hardened bundle (user namespace, no
capabilities, no_new_privs, Docker's seccomp profile, read-only root, cgroup
limits) and runs it with the tier's runtime (container: runc, sandbox:
runsc). Output is streamed; the exit code is the replica's. If the tier
can't run here, nothing runs (there is no fallback to a weaker tier).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := tenancy.ParseTier(v1.Tier(tier))
			if err != nil || t == tenancy.None {
				return withCode(ExitInvalid, fmt.Errorf("--tier %q: use container, sandbox, vm or host", tier))
			}
			if tenant == "" {
				return withCode(ExitInvalid, errors.New("--tenant is required: every replica belongs to a tenant"))
			}
			res := topology.Resources{PIDs: pids}
			for name, s := range map[string]string{"cpu": cpu, "memory": memory} {
				q, err := resource.ParseQuantity(s)
				if err != nil {
					return withCode(ExitInvalid, fmt.Errorf("--%s %q: %w (use e.g. 500m, 2, 256Mi)", name, s, err))
				}
				if name == "cpu" {
					res.MilliCPU = q.MilliValue()
				} else {
					res.Memory = q.Value()
				}
			}
			var images *v1.ImagePolicy
			if block != "" {
				if _, err := policy.ParseSeverity(block); err != nil {
					return withCode(ExitInvalid, fmt.Errorf("--block-severity: %w", err))
				}
				images = &v1.ImagePolicy{BlockSeverity: block}
			}
			ctx := cmd.Context()
			node, err := plugins.OpenNode(ctx, dataDir, replica.Options{VM: microvm.Options{AllowEmulated: allowEmulated}}, plugins.Config{})
			if err != nil {
				return err
			}
			suffix := make([]byte, 4)
			_, _ = rand.Read(suffix)
			spec := replica.Spec{
				ID:     "run-" + strings.ToLower(tenant) + "-" + hex.EncodeToString(suffix),
				Tenant: tenant, Tier: t, Image: args[0], Args: args[1:], Env: env,
				Resources: res, Capabilities: caps, Images: images,
			}
			exit, err := node.Run(ctx, spec, runtime.IO{Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr()})
			if err != nil {
				if errors.Is(err, replica.ErrInvalid) {
					return withCode(ExitInvalid, err)
				}
				return err
			}
			if exit.Code != 0 {
				return silent{code: exit.Code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", defaultImageDataDir, "data directory (images, bundles, runtime state)")
	f.StringVar(&tenant, "tenant", "", "tenant the replica belongs to (sets its UID range)")
	f.StringVar(&tier, "tier", "container", "isolation tier: container, sandbox, vm or host")
	f.StringVar(&cpu, "cpu", "1", "CPU limit (cores, e.g. 500m)")
	f.StringVar(&memory, "memory", "256Mi", "memory limit")
	f.Int64Var(&pids, "pids", 128, "PIDs limit")
	f.StringArrayVarP(&env, "env", "e", nil, "environment variable NAME=VALUE (repeatable)")
	f.StringArrayVar(&caps, "cap-add", nil, "capability from the allow-list (elevated workloads only)")
	f.BoolVar(&allowEmulated, allowEmulatedVMFlag, false, allowEmulatedVMHelp)
	f.StringVar(&block, "block-severity", "", "severity at which the image's configuration findings and vulnerabilities refuse it, as a tenant's spec.images.blockSeverity (default "+policy.DefaultBlockSeverity.String()+")")
	return cmd
}
