package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/herald-feed/herald/loadtest/internal/labkit"

	"github.com/spf13/cobra"

	"github.com/herald-feed/herald/loadtest/internal/coordlab"
)

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	return labkit.Root("labcoord", "Herald's coordination lab: ZooKeeper and etcd locks, elections, failover, throughput and fencing, measured", stdout, stderr, runCmd(stdout, stderr), holderCmd(stdout))
}

func runCmd(stdout, stderr io.Writer) *cobra.Command {
	cfg := coordlab.DefaultConfig()
	var (
		zkList, etcdList string
		out, root        string
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the lab against a ZooKeeper ensemble and an etcd cluster on loopback, and write the report",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Servers.ZK = splitList(zkList)
			cfg.Servers.Etcd = splitList(etcdList)
			for _, a := range append(append([]string(nil), cfg.Servers.ZK...), cfg.Servers.Etcd...) {
				if !isLoopback(a) {
					return fmt.Errorf("server %s is not on loopback: the lab loads and kills what it runs against, so it only runs on this machine's own servers", a)
				}
			}
			if (cfg.Servers.EtcdUser == "") != (cfg.Servers.EtcdPasswordFile == "") {
				return errors.New("--etcd-user and --etcd-password-file go together")
			}
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("finding the lab's own binary for its holder processes: %w", err)
			}
			cfg.Holder = []string{exe, "holder"}
			if root == "" {
				root = "herald-lab/" + time.Now().UTC().Format("20060102T150405Z")
			}
			cfg.Root = root
			cfg.Progress = stderr
			if err := cfg.Validate(); err != nil {
				return err
			}
			r, runErr := coordlab.Run(cmd.Context(), cfg)
			if r == nil {
				return runErr
			}
			return labkit.Close(stdout, "lab-coordination", out, r, runErr)
		},
	}
	d := coordlab.DefaultConfig()
	fs := cmd.Flags()
	fs.StringVar(&zkList, "zk", os.Getenv("HERALD_LAB_ZK"), "ZooKeeper servers, comma-separated host:port (HERALD_LAB_ZK)")
	fs.StringVar(&etcdList, "etcd", os.Getenv("HERALD_LAB_ETCD"), "etcd endpoints, comma-separated host:port (HERALD_LAB_ETCD)")
	fs.StringVar(&cfg.Servers.EtcdUser, "etcd-user", "", "etcd user, if that etcd has authentication on (the lab's own cluster has none)")
	fs.StringVar(&cfg.Servers.EtcdPasswordFile, "etcd-password-file", "", "file holding --etcd-user's password")
	fs.StringVar(&out, "out", "loadtest/out/lab-coordination", "directory for lab-coordination.{json,md} and the PNG charts")
	fs.StringVar(&root, "root", "", "znode directory and etcd key prefix of the run (default herald-lab/<UTC time>); deleted at the end")
	fs.StringSliceVar(&cfg.Sections, "sections", d.Sections, "what to measure: "+strings.Join(coordlab.AllSections, ","))
	fs.IntSliceVar(&cfg.Contenders, "contenders", d.Contenders, "hand-off: numbers of contenders, each its own connection and session")
	fs.IntVar(&cfg.MaxHandoffs, "handoffs", d.MaxHandoffs, "hand-off: at most this many hand-offs per cell")
	fs.DurationVar(&cfg.HandoffDuration, "handoff-duration", d.HandoffDuration, "hand-off: at most this long per cell")
	fs.DurationVar(&cfg.Hold, "hold", d.Hold, "hand-off: how long each holder keeps the lock (its critical section)")
	fs.DurationSliceVar(&cfg.TTLs, "ttls", d.TTLs, "failover: ZooKeeper session timeouts and etcd lease TTLs (whole seconds)")
	fs.IntVar(&cfg.FailoverTrials, "failover-trials", d.FailoverTrials, "failover: trials per recipe and TTL")
	fs.DurationVar(&cfg.FencingTTL, "fencing-ttl", d.FencingTTL, "fencing: the paused holder's session timeout or lease TTL")
	fs.IntVar(&cfg.FencingTrials, "fencing-trials", d.FencingTrials, "fencing: drills per system")
	fs.IntVar(&cfg.InFlight, "in-flight", d.InFlight, "throughput: operations in flight in the concurrent cells")
	fs.IntVar(&cfg.MaxOps, "ops", d.MaxOps, "throughput: at most this many operations per cell")
	fs.DurationVar(&cfg.CellDuration, "cell-duration", d.CellDuration, "throughput: at most this long per cell")
	return cmd
}

// holderCmd is the lab's holder process (coordlab.RunHolder); the lab
// starts it itself.
func holderCmd(stdout io.Writer) *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:    "holder --config JSON",
		Short:  "Hold a lock or leadership for the lab (started by labcoord run)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cfg coordlab.HolderConfig
			if err := json.Unmarshal([]byte(config), &cfg); err != nil {
				return fmt.Errorf("--config: %w", err)
			}
			return coordlab.RunHolder(cmd.Context(), cfg, os.Stdin, stdout)
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "the holder's coordlab.HolderConfig as JSON")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// isLoopback reports whether host:port names this machine by a loopback
// address or "localhost".
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
