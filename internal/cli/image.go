package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"rung.dev/rung/internal/image"
)

// defaultImageDataDir is where `rung image` keeps its store unless
// --data-dir says otherwise.
const defaultImageDataDir = "/var/lib/rung"

// newImageCmd is `rung image`: pack, load, pull, list, remove and unpack
// OCI images in the node's local store, without Docker.
func newImageCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage OCI images on this node, without Docker",
	}
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", defaultImageDataDir, "data directory; images live in DIR/images")
	open := func(cmd *cobra.Command) (*image.Store, error) {
		return image.Open(cmd.Context(), dataDir)
	}
	cmd.AddCommand(
		newImagePackCmd(open),
		newImageLoadCmd(open),
		newImagePullCmd(open),
		newImageListCmd(open),
		newImageRemoveCmd(open),
		newImageUnpackCmd(open),
		newImageSignCmd(),
		newImageVerifyCmd(),
		newImageKeygenCmd(),
	)
	return cmd
}

// storeOpener opens the store named by the image command's flags.
type storeOpener func(cmd *cobra.Command) (*image.Store, error)

func newImagePackCmd(open storeOpener) *cobra.Command {
	var (
		tag, health string
		busybox     bool
		opts        image.PackOptions
	)
	cmd := &cobra.Command{
		Use:   "pack [DIR] --tag NAME[:TAG]",
		Short: "Make a one-layer OCI image from a directory",
		Long: "Make a one-layer OCI image from a directory, such as a debootstrap'ed root. The layer is\n" +
			"deterministic (sorted entries, fixed mtimes, owner 0:0), so the same directory always gives the\n" +
			"same digest. As when an image is unpacked to run, device nodes, fifos and sockets are left out\n" +
			"(every replica gets its runtime's /dev) and setuid/setgid bits are stripped; both are listed on\n" +
			"stderr. Symlinks are kept as links, never followed; hard links and long names are kept.\n" +
			"--healthcheck takes what follows HEALTHCHECK CMD in a Dockerfile: a command for the image's\n" +
			"shell, or a JSON array to run without one. With --busybox, DIR is not needed: the image is a\n" +
			"minimal root built from " + image.BusyboxPath + ".",
		Example: "  rung image pack ./root --tag app:1 --user 1000 --entrypoint /app/run \\\n" +
			"      --healthcheck '[\"/app/run\", \"--check\"]' --healthcheck-interval 30s",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tag == "" {
				return withCode(ExitInvalid, errors.New("pack: --tag is required"))
			}
			if busybox == (len(args) == 1) {
				return withCode(ExitInvalid, errors.New("pack: give either DIR or --busybox"))
			}
			var err error
			if opts.Entrypoint, err = argvFlag("entrypoint", opts.Entrypoint, true); err != nil {
				return err
			}
			if opts.Cmd, err = argvFlag("cmd", opts.Cmd, len(opts.Entrypoint) == 0); err != nil {
				return err
			}
			if cmd.Flags().Changed("healthcheck") {
				hc, err := image.ParseHealthcheck(health)
				if err != nil {
					return withCode(ExitInvalid, fmt.Errorf("pack: --healthcheck: %w", err))
				}
				opts.Healthcheck = hc
			}
			dir := ""
			if busybox {
				tmp, err := os.MkdirTemp("", "rung-busybox-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(tmp)
				if err := image.BusyboxRoot(tmp); err != nil {
					return err
				}
				dir = tmp
				if len(opts.Healthcheck) == 0 {
					opts.Healthcheck = image.BusyboxHealthcheck()
				}
			} else {
				dir = args[0]
			}
			s, err := open(cmd)
			if err != nil {
				return err
			}
			var st image.PackStats
			opts.Stats = &st
			d, err := s.Pack(cmd.Context(), dir, tag, opts)
			if err != nil {
				return imageErr(err)
			}
			w := cmd.ErrOrStderr()
			if len(st.Skipped) > 0 {
				fmt.Fprintf(w, "note: left out %d device node(s), fifo(s) and socket(s); replicas get their runtime's own /dev: %s\n", len(st.Skipped), someOf(st.Skipped))
			}
			if len(st.Stripped) > 0 {
				fmt.Fprintf(w, "note: stripped setuid/setgid bits from %d file(s) and directories (CIS 4.8; no_new_privs would ignore them): %s\n", len(st.Stripped), someOf(st.Stripped))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", tag, d)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&tag, "tag", "t", "", "store name, NAME[:TAG]")
	f.BoolVar(&busybox, "busybox", false, "pack a minimal busybox root instead of DIR")
	f.StringArrayVar(&opts.Entrypoint, "entrypoint", nil, "entrypoint: a JSON array [\"/app/run\", \"--serve\"], or one argument per --entrypoint")
	f.StringArrayVar(&opts.Cmd, "cmd", nil, "default arguments: a JSON array, or one argument per --cmd")
	f.StringVar(&opts.User, "user", image.DefaultUser, "numeric UID[:GID] the image runs as, below 65536 (names are not looked up)")
	f.StringVar(&health, "healthcheck", "", "HEALTHCHECK CMD: a shell command, a JSON array [\"EXE\", \"ARG\"…] (no shell), or NONE")
	f.DurationVar(&opts.HealthInterval, "healthcheck-interval", 0, "time between two health checks (default: the runtime's, 30s)")
	f.DurationVar(&opts.HealthTimeout, "healthcheck-timeout", 0, "time after which a health check counts as failed (default: the runtime's, 30s)")
	f.DurationVar(&opts.HealthStartPeriod, "healthcheck-start-period", 0, "time after start during which failures don't count (default 0)")
	f.IntVar(&opts.HealthRetries, "healthcheck-retries", 0, "consecutive failures that make the replica unhealthy (default: the runtime's, 3)")
	f.StringArrayVar(&opts.Env, "env", nil, "environment variable KEY=VALUE (repeatable; default "+image.DefaultPath+")")
	f.StringVar(&opts.WorkingDir, "workdir", "", "working directory")
	return cmd
}

func newImageLoadCmd(open storeOpener) *cobra.Command {
	return &cobra.Command{
		Use:   "load PATH",
		Short: "Import an OCI image layout directory or a docker-archive tarball",
		Long: "Import images from an OCI image layout (oci-layout:DIR[:TAG], or a directory) or a\n" +
			"docker-archive tarball as written by `docker save` (docker-archive:FILE, or a file).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := open(cmd)
			if err != nil {
				return err
			}
			refs, err := s.Load(cmd.Context(), args[0])
			if err != nil {
				return imageErr(err)
			}
			for _, r := range refs {
				fmt.Fprintf(cmd.OutOrStdout(), "loaded %s %s\n", r, r.Digest)
			}
			return nil
		},
	}
}

func newImagePullCmd(open storeOpener) *cobra.Command {
	var (
		insecure bool
		platform string
	)
	cmd := &cobra.Command{
		Use:   "pull REF",
		Short: "Download an image from an OCI registry into the store",
		Long: "Download an image from an OCI registry. The tag is resolved to a digest once; the store\n" +
			"records the digest. Credentials come from the Docker config file, if any.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := image.PullOptions{Insecure: insecure, Keychain: authn.DefaultKeychain}
			if platform != "" {
				p, err := v1.ParsePlatform(platform)
				if err != nil {
					return withCode(ExitInvalid, fmt.Errorf("pull: --platform: %w", err))
				}
				opts.Platform = *p
			}
			s, err := open(cmd)
			if err != nil {
				return err
			}
			opts.Progress = newProgress(cmd, "pull")
			r, err := s.Pull(cmd.Context(), args[0], opts)
			if err != nil {
				return imageErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", r, r.Digest)
			return nil
		},
	}
	cmd.Flags().BoolVar(&insecure, "insecure", false, "allow plain HTTP to a registry that is not on loopback")
	cmd.Flags().StringVar(&platform, "platform", "", "OS/ARCH[/VARIANT] to pick from a multi-platform image (default linux on this machine's architecture)")
	return cmd
}

func newImageListCmd(open storeOpener) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the images in the store",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" {
				return withCode(ExitInvalid, fmt.Errorf("ls: -o %q: only json is supported", output))
			}
			s, err := open(cmd)
			if err != nil {
				return err
			}
			list, err := s.List(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				if list == nil {
					list = []image.Entry{}
				}
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(list)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tTAG\tDIGEST\tSIZE\tCREATED")
			for _, e := range list {
				tag := e.Tag
				if tag == "" {
					tag = "<none>"
				}
				created := "-"
				if !e.Created.IsZero() {
					created = e.Created.UTC().Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Name, tag, shortDigest(e.Digest), humanBytes(e.Size), created)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func newImageRemoveCmd(open storeOpener) *cobra.Command {
	return &cobra.Command{
		Use:     "rm REF...",
		Aliases: []string{"remove"},
		Short:   "Remove names from the store and delete blobs no name needs",
		Long:    "Remove NAME[:TAG], NAME@DIGEST, or every name of a sha256:DIGEST, then delete unused blobs.",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := open(cmd)
			if err != nil {
				return err
			}
			for _, ref := range args {
				if err := s.Remove(cmd.Context(), ref); err != nil {
					return imageErr(err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", ref)
			}
			return nil
		},
	}
}

func newImageUnpackCmd(open storeOpener) *cobra.Command {
	var (
		uidBase, gidBase, idRange int
		maxLayer, maxTotal        int64
	)
	cmd := &cobra.Command{
		Use:   "unpack REF DIR",
		Short: "Unpack an image into a root filesystem directory, safely",
		Long: "Apply an image's layers into DIR through a root-confined file handle: entries that would\n" +
			"escape DIR are refused, device nodes and fifos are not created, setuid/setgid bits are\n" +
			"stripped (both listed), and --uid-base/--gid-base shift ownership into a user-namespace range.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := open(cmd)
			if err != nil {
				return err
			}
			img, d, err := s.Resolve(cmd.Context(), args[0])
			if err != nil {
				return imageErr(err)
			}
			var st image.UnpackStats
			opts := image.UnpackOptions{
				MaxLayerSize: maxLayer,
				MaxTotalSize: maxTotal,
				Progress:     newProgress(cmd, "unpack"),
				Stats:        &st,
			}
			if cmd.Flags().Changed("uid-base") || cmd.Flags().Changed("gid-base") {
				if uidBase <= 0 || gidBase <= 0 || idRange <= 0 {
					return withCode(ExitInvalid, errors.New("unpack: --uid-base, --gid-base and --id-range must be positive"))
				}
				opts.Chown = image.ShiftIDs(uidBase, gidBase, idRange)
			}
			if err := image.Unpack(cmd.Context(), img, args[1], opts); err != nil {
				return imageErr(err)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "unpacked %s into %s: %d layers, %d entries, %s\n", d, args[1], st.Layers, st.Entries, humanBytes(st.Bytes))
			if len(st.Stripped) > 0 {
				fmt.Fprintf(w, "stripped setuid/setgid from %d: %s\n", len(st.Stripped), strings.Join(st.Stripped, ", "))
			}
			if len(st.Skipped) > 0 {
				fmt.Fprintf(w, "left out %d device node(s) and fifo(s): %s\n", len(st.Skipped), strings.Join(st.Skipped, ", "))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&uidBase, "uid-base", 0, "host uid that the image's uid 0 maps to")
	f.IntVar(&gidBase, "gid-base", 0, "host gid that the image's gid 0 maps to")
	f.IntVar(&idRange, "id-range", 65536, "size of the uid/gid range; ids outside it are refused")
	f.Int64Var(&maxLayer, "max-layer-size", image.DefaultMaxLayerSize, "largest uncompressed layer, bytes")
	f.Int64Var(&maxTotal, "max-size", image.DefaultMaxTotalSize, "largest uncompressed image, bytes")
	return cmd
}

// imageErr gives bad references and options the invalid-input exit code.
func imageErr(err error) error {
	if errors.Is(err, image.ErrInvalidRef) || errors.Is(err, image.ErrInvalidConfig) {
		return withCode(ExitInvalid, err)
	}
	return err
}

// argvFlag reads an argv flag as Docker's exec form: one JSON array, or
// one argument per repetition. When the value names the program, a single
// value with a space and no brackets is refused: it would run as one
// program name with a space in it, never found.
func argvFlag(name string, vals []string, program bool) ([]string, error) {
	if len(vals) == 1 && strings.HasPrefix(strings.TrimSpace(vals[0]), "[") {
		var argv []string
		if err := json.Unmarshal([]byte(vals[0]), &argv); err != nil || len(argv) == 0 || argv[0] == "" {
			return nil, withCode(ExitInvalid, fmt.Errorf("pack: --%s %s: want a JSON array of strings with a program first, e.g. [\"/app/run\", \"--serve\"]", name, vals[0]))
		}
		return argv, nil
	}
	if program && len(vals) == 1 && strings.ContainsAny(vals[0], " \t") {
		return nil, withCode(ExitInvalid, fmt.Errorf("pack: --%s %q has a space: give a JSON array [\"/app/run\", \"--serve\"] or one argument per --%s", name, vals[0], name))
	}
	return vals, nil
}

// someOf lists the first few of names, then how many more there are.
func someOf(names []string) string {
	const most = 8
	if len(names) <= most {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:most], ", "), len(names)-most)
}

func shortDigest(h v1.Hash) string {
	if len(h.Hex) > 12 {
		return h.Algorithm + ":" + h.Hex[:12]
	}
	return h.String()
}

// humanBytes formats n in binary units: 512 B, 1.5 KiB, 2.0 MiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// newProgress draws a bar per blob on stdout when it is a terminal, and
// otherwise prints one plain line per finished blob on stderr, so that
// stdout stays clean for scripts.
func newProgress(cmd *cobra.Command, verb string) image.Progress {
	out := cmd.OutOrStdout()
	if isTerminal(out) {
		return &progressBar{w: out, verb: verb, tty: true, done: map[v1.Hash]bool{}}
	}
	return &progressBar{w: cmd.ErrOrStderr(), verb: verb, done: map[v1.Hash]bool{}}
}

// isTerminal reports whether w is a terminal (not merely a character
// device such as /dev/null).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progressBar implements image.Progress for the command line.
type progressBar struct {
	w    io.Writer
	verb string
	tty  bool

	mu   sync.Mutex
	last time.Time
	done map[v1.Hash]bool
}

const barWidth = 30

func (p *progressBar) Update(blob v1.Hash, done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done[blob] {
		return
	}
	finished := total >= 0 && done == total
	if finished {
		p.done[blob] = true
	}
	if !p.tty {
		if finished {
			fmt.Fprintf(p.w, "%s %s: %s\n", p.verb, shortDigest(blob), humanBytes(total))
		}
		return
	}
	if !finished && time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	bar := strings.Repeat(" ", barWidth)
	amount := humanBytes(done)
	if total > 0 {
		n := int(done * barWidth / total)
		bar = strings.Repeat("=", n) + strings.Repeat(" ", barWidth-n)
		if n < barWidth {
			bar = bar[:n] + ">" + bar[n+1:]
		}
		amount += " / " + humanBytes(total)
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s %s [%s] %s", p.verb, shortDigest(blob), bar, amount)
	if finished {
		fmt.Fprintln(p.w)
	}
}
