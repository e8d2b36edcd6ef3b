package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"rung.dev/rung/internal/client"
	"rung.dev/rung/internal/logfile"
)

func newLogsCmd() *cobra.Command {
	var (
		cf                   clientFlags
		tenant, since        string
		output               string
		replica, tail        int
		follow, previous, ts bool
	)
	cmd := &cobra.Command{
		Use:   "logs WORKLOAD[/INDEX] [-f] [--previous] [--since D] [--tail N]",
		Short: "Print a workload's replicas' logs, or follow them",
		Long: `Prints the standard output and error of a workload's replicas as their nodes
keep them (a size-capped, rotated log per replica; the previous run's log
survives one restart): one replica with WORKLOAD/INDEX or --replica, else
each replica in turn. -f follows new lines until interrupted (several
replicas at once, each line prefixed with its replica). --since takes a
duration (10m) or a time (2026-12-04T10:00:00Z). A replica that never
started says why. -o json prints the tails the nodes last reported, as
the API's JSON.`,
		Example: "  rung logs biology/sequencer\n  rung logs biology/sequencer/1 -f --tail 20\n  rung logs biology/sequencer/1 --previous",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if replica < -1 {
				return withCode(ExitInvalid, fmt.Errorf("--replica %d: want a replica number, 0 or more", replica))
			}
			if tail < 0 {
				return withCode(ExitInvalid, fmt.Errorf("--tail %d: want a number of lines, 0 for all", tail))
			}
			if output != "" && output != "json" {
				return withCode(ExitInvalid, fmt.Errorf("-o %q: want json, or nothing for plain text", output))
			}
			if follow && previous {
				return withCode(ExitInvalid, fmt.Errorf("-f and --previous: the previous run's log does not grow; use one of them"))
			}
			o := logfile.ReadOptions{Follow: follow, Previous: previous, Tail: tail, Timestamps: ts}
			if since != "" {
				t, err := parseSince(since, time.Now())
				if err != nil {
					return withCode(ExitInvalid, err)
				}
				o.Since = t
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			target, err := parseReplicaTarget(cmd, c, args[0], tenant)
			if err != nil {
				return err
			}
			if replica >= 0 {
				target.index = replica
			}
			if output == "json" {
				return logsJSON(cmd, c, target, tail)
			}
			return printLogs(cmd, c, target, o)
		},
	}
	cf.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&tenant, "tenant", "", "the workload's tenant, when WORKLOAD does not name it")
	fl.IntVar(&replica, "replica", -1, "only this replica (0, 1, …), as WORKLOAD/INDEX")
	fl.IntVar(&tail, "tail", 0, "only the last N lines of each replica (0: all)")
	fl.BoolVarP(&follow, "follow", "f", false, "keep printing new lines")
	fl.BoolVarP(&previous, "previous", "p", false, "the previous run's log (before the last restart)")
	fl.StringVar(&since, "since", "", "only lines newer than a duration (10m) or a time (RFC 3339)")
	fl.BoolVar(&ts, "timestamps", false, "start each line with the time it was written")
	fl.StringVarP(&output, "output", "o", "", "json for the tails the nodes last reported")
	return cmd
}

// parseSince reads --since: a duration before now, or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want a duration such as 10m or a time such as 2026-12-04T10:00:00Z", s)
}

// printLogs prints (or follows) the logs of the target's replicas.
func printLogs(cmd *cobra.Command, c *client.Client, target replicaTarget, o logfile.ReadOptions) error {
	ctx, out := cmd.Context(), cmd.OutOrStdout()
	indexes := []int{target.index}
	if target.index < 0 {
		rs, err := c.Replicas(ctx, target.tenant, target.name)
		if err != nil {
			return apiError(err)
		}
		indexes = indexes[:0]
		for _, r := range rs {
			indexes = append(indexes, r.Index)
		}
		if len(indexes) == 0 {
			fmt.Fprintf(cmd.ErrOrStderr(), "%s/%s has no replicas\n", target.tenant, target.name)
			return nil
		}
	}
	many := len(indexes) > 1
	if !o.Follow {
		failed := false
		for i, idx := range indexes {
			if many {
				if i > 0 {
					fmt.Fprintln(out)
				}
				fmt.Fprintf(out, "==> %s/%s/%d <==\n", target.tenant, target.name, idx)
			}
			rc, err := c.ReplicaLog(ctx, target.tenant, target.name, idx, o)
			if err != nil {
				if !many {
					return apiError(err)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "replica %d: %v\n", idx, err)
				failed = true
				continue
			}
			_, err = io.Copy(out, rc)
			rc.Close()
			if err != nil && ctx.Err() == nil {
				return err
			}
		}
		if failed {
			return withCode(ExitFailure, fmt.Errorf("some replicas' logs could not be read"))
		}
		return nil
	}
	// Follow every replica at once; lines go out whole, prefixed when
	// there are several.
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, len(indexes))
	for i, idx := range indexes {
		wg.Go(func() {
			errs[i] = followOne(ctx, c, target, idx, o, func(line string) {
				mu.Lock()
				defer mu.Unlock()
				if many {
					fmt.Fprintf(out, "[%d] ", idx)
				}
				fmt.Fprintln(out, line)
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil && ctx.Err() == nil {
			if !many {
				return apiError(err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "replica %d: %v\n", indexes[i], err)
		}
	}
	return nil
}

// followOne follows one replica's log, line by line.
func followOne(ctx context.Context, c *client.Client, t replicaTarget, idx int, o logfile.ReadOptions, line func(string)) error {
	rc, err := c.ReplicaLog(ctx, t.tenant, t.name, idx, o)
	if err != nil {
		return err
	}
	defer rc.Close()
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line(sc.Text())
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}

// logsJSON prints the log tails the nodes last reported (the API's JSON).
func logsJSON(cmd *cobra.Command, c *client.Client, t replicaTarget, tail int) error {
	logs, err := c.Logs(cmd.Context(), t.tenant, t.name, t.index, tail)
	if err != nil {
		return apiError(err)
	}
	return writeJSON(cmd.OutOrStdout(), logs)
}
