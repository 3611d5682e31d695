// Command feedctl is a command-line client for Herald's gRPC API.
//
//	feedctl follow bob alice        # bob follows alice
//	feedctl post alice "hello"      # alice posts
//	feedctl timeline bob            # bob's home timeline, newest first
//	feedctl watch bob               # stream bob's new timeline entries
//	feedctl token alice             # print a token for alice
//
// Each command acts as the user it names first (post alice acts as alice,
// timeline bob as bob), with a token signed by the development key in
// --data (the all-in-one's data dir, ./.herald by default), or sends
// --token (HERALD_TOKEN) instead. Without either, calls go with no token:
// the public reads work, and the rest get UNAUTHENTICATED.
//
// Calls are plaintext unless --tls or one of --tls-ca, --tls-cert and
// --tls-key (or HERALD_TLS_CA, HERALD_TLS_CERT and HERALD_TLS_KEY, the
// variables a Herald process reads) is given: then they are TLS, trusting
// --tls-ca's CAs, or the system's without it, and presenting --tls-cert
// when the server asks for a client certificate (mutual TLS).
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	feedv1 "github.com/herald-feed/herald/proto/feed/v1"
	"github.com/herald-feed/herald/services/platform/auth"
	"github.com/herald-feed/herald/services/platform/backend"
	"github.com/herald-feed/herald/services/platform/bus"
	"github.com/herald-feed/herald/services/platform/cassandrastore"
	"github.com/herald-feed/herald/services/platform/discovery"
	"github.com/herald-feed/herald/services/platform/event"
	"github.com/herald-feed/herald/services/platform/feed"
	"github.com/herald-feed/herald/services/platform/kafkabus"
	"github.com/herald-feed/herald/services/platform/node"
	"github.com/herald-feed/herald/services/platform/tlsconfig"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot(os.Stdout).ExecuteContext(ctx)
	stop()
	if err != nil {
		if st, ok := status.FromError(err); ok {
			fmt.Fprintf(os.Stderr, "feedctl: %s: %s\n", st.Code(), st.Message())
			if st.Code() == codes.Unauthenticated {
				fmt.Fprintln(os.Stderr, "feedctl: sign as the user with --data DIR (the all-in-one's data dir, holding auth-dev-key.pem), or pass --token / HERALD_TOKEN")
			}
		} else {
			fmt.Fprintf(os.Stderr, "feedctl: %v\n", err)
		}
		os.Exit(1)
	}
}

type client struct {
	ns      string
	nats    string
	addr    string
	etcd    string
	timeout time.Duration
	tlsOn   bool
	tls     tlsconfig.Files
	creds   credentials.TransportCredentials // made at the first dial
	token   string
	data    string
	// etcdLogin and natsLogin log in to a cluster's etcd (--etcd) and
	// NATS (the dead-letter commands), as a Herald process does.
	etcdLogin, natsLogin node.Login
	// busKind, kafka and kafkaLogin choose the event log of the
	// dead-letter commands, as -bus and -kafka-brokers do a process's.
	busKind    string
	kafka      string
	kafkaLogin node.Login
	signer     *auth.Signer // the development key in data, found at the first dial
	out        io.Writer
	conns      map[string]*grpc.ClientConn
}

// newRoot returns feedctl's commands, which print to out.
func newRoot(out io.Writer) *cobra.Command {
	c := &client{out: out, conns: make(map[string]*grpc.ClientConn)}
	root := &cobra.Command{
		Use:           "feedctl",
		Short:         "Talk to a Herald deployment over gRPC",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	addr := os.Getenv("HERALD_ADDR")
	if addr == "" {
		addr = "localhost:7070"
	}
	root.PersistentFlags().StringVar(&c.addr, "addr", addr, "gRPC address of a Herald process (HERALD_ADDR)")
	root.PersistentFlags().StringVar(&c.etcd, "etcd", os.Getenv("HERALD_ETCD_ENDPOINTS"), "etcd endpoints; if set, find each service through etcd instead of --addr (HERALD_ETCD_ENDPOINTS)")
	ns := os.Getenv("HERALD_NAMESPACE")
	if ns == "" {
		ns = "herald"
	}
	root.PersistentFlags().StringVar(&c.ns, "namespace", ns, "deployment name, for --etcd discovery (HERALD_NAMESPACE)")
	root.PersistentFlags().DurationVar(&c.timeout, "timeout", 10*time.Second, "deadline of each call")
	root.PersistentFlags().StringVar(&c.nats, "nats", os.Getenv("HERALD_NATS_URL"), "NATS URL, for the dead-letter commands on --bus jetstream (HERALD_NATS_URL)")
	busKind := os.Getenv("HERALD_BUS")
	if busKind == "" {
		busKind = node.BusJetStream
	}
	root.PersistentFlags().StringVar(&c.busKind, "bus", busKind, "event log of the dead-letter commands: jetstream or kafka (HERALD_BUS)")
	root.PersistentFlags().StringVar(&c.kafka, "kafka-brokers", os.Getenv("HERALD_KAFKA_BROKERS"), "comma-separated Kafka brokers, for the dead-letter commands on --bus kafka (HERALD_KAFKA_BROKERS)")
	root.PersistentFlags().StringVar(&c.kafkaLogin.User, "kafka-user", os.Getenv("HERALD_KAFKA_USER"), "user to log in to Kafka as (HERALD_KAFKA_USER)")
	root.PersistentFlags().StringVar(&c.kafkaLogin.PasswordFile, "kafka-password-file", os.Getenv("HERALD_KAFKA_PASSWORD_FILE"), "file holding --kafka-user's password (HERALD_KAFKA_PASSWORD_FILE)")
	root.PersistentFlags().BoolVar(&c.tlsOn, "tls", false, "call over TLS, trusting the system's CAs (implied by --tls-ca, --tls-cert and --tls-key)")
	root.PersistentFlags().StringVar(&c.tls.CA, "tls-ca", os.Getenv("HERALD_TLS_CA"), "PEM CA bundle: call over TLS, trusting only these CAs (HERALD_TLS_CA)")
	root.PersistentFlags().StringVar(&c.tls.Cert, "tls-cert", os.Getenv("HERALD_TLS_CERT"), "PEM client certificate, for a deployment with mutual TLS (HERALD_TLS_CERT)")
	root.PersistentFlags().StringVar(&c.tls.Key, "tls-key", os.Getenv("HERALD_TLS_KEY"), "PEM private key of --tls-cert (HERALD_TLS_KEY)")
	root.PersistentFlags().StringVar(&c.etcdLogin.User, "etcd-user", os.Getenv("HERALD_ETCD_USER"), "user to log in to etcd as (HERALD_ETCD_USER)")
	root.PersistentFlags().StringVar(&c.etcdLogin.PasswordFile, "etcd-password-file", os.Getenv("HERALD_ETCD_PASSWORD_FILE"), "file holding --etcd-user's password (HERALD_ETCD_PASSWORD_FILE)")
	root.PersistentFlags().StringVar(&c.natsLogin.User, "nats-user", os.Getenv("HERALD_NATS_USER"), "user to log in to NATS as (HERALD_NATS_USER)")
	root.PersistentFlags().StringVar(&c.natsLogin.PasswordFile, "nats-password-file", os.Getenv("HERALD_NATS_PASSWORD_FILE"), "file holding --nats-user's password (HERALD_NATS_PASSWORD_FILE)")
	root.PersistentFlags().StringVar(&c.token, "token", os.Getenv("HERALD_TOKEN"), "bearer token sent with every call, instead of one signed for the user each command names (HERALD_TOKEN)")
	data := os.Getenv("HERALD_DATA")
	if data == "" {
		data = ".herald"
	}
	root.PersistentFlags().StringVar(&c.data, "data", data, "directory of the development signing key (the all-in-one's data dir) (HERALD_DATA)")
	root.AddCommand(c.tokenCmd(), c.keygenCmd(), c.postCmd(), c.getCmd(), c.deleteCmd(), c.postsCmd(),
		c.followCmd(true), c.followCmd(false), c.listCmd("followers"), c.listCmd("following"),
		c.timelineCmd(), c.watchCmd(), c.deadLettersCmd(), c.replayCmd(), c.healthCmd(), c.migrateCmd())
	return root
}

// conn returns a connection for service: the --addr process, or the
// service's instances found through etcd.
func (c *client) conn(service string) (*grpc.ClientConn, error) {
	if cc, ok := c.conns[service]; ok {
		return cc, nil
	}
	if c.creds == nil {
		c.creds = insecure.NewCredentials()
		if c.tlsOn || c.tls != (tlsconfig.Files{}) {
			creds, err := tlsconfig.ClientCredentials(c.tls)
			if err != nil {
				return nil, err
			}
			c.creds = creds
		}
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(c.creds)}
	switch {
	case c.token != "":
		opts = append(opts, grpc.WithPerRPCCredentials(auth.Bearer(c.token)))
	default:
		if c.signer == nil {
			if s, err := auth.DevSigner(c.data); err == nil {
				c.signer = s
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
		if c.signer != nil {
			opts = append(opts, auth.ActAsNamedUser(c.signer)...)
		}
	}
	var cc *grpc.ClientConn
	var err error
	if c.etcd != "" {
		user, password, lerr := c.etcdLogin.Read("etcd")
		if lerr != nil {
			return nil, lerr
		}
		cli, cerr := clientv3.New(clientv3.Config{Endpoints: strings.Split(c.etcd, ","), DialTimeout: 5 * time.Second, Logger: zap.NewNop(), Username: user, Password: password})
		if cerr != nil {
			return nil, fmt.Errorf("etcd %s: %w", c.etcd, cerr)
		}
		cc, err = discovery.Dial(cli, c.ns, service, opts...)
	} else {
		cc, err = grpc.NewClient(c.addr, opts...)
	}
	if err != nil {
		return nil, err
	}
	c.conns[service] = cc
	return cc, nil
}

func (c *client) call(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), c.timeout)
}

func (c *client) posts() (feedv1.PostServiceClient, error) {
	cc, err := c.conn("post")
	return feedv1.NewPostServiceClient(cc), err
}

func (c *client) graph() (feedv1.GraphServiceClient, error) {
	cc, err := c.conn("graph")
	return feedv1.NewGraphServiceClient(cc), err
}

func (c *client) timelines() (feedv1.TimelineServiceClient, error) {
	cc, err := c.conn("timeline")
	return feedv1.NewTimelineServiceClient(cc), err
}

func (c *client) printPost(p *feedv1.Post) {
	fmt.Fprintf(c.out, "%s  %s  @%s: %s\n", p.PostId, p.CreateTime.AsTime().Local().Format("2006-01-02 15:04:05"), p.AuthorId, p.Text)
}

func (c *client) printNext(cmd *cobra.Command, next string) {
	if next != "" {
		args := append([]string{cmd.Name()}, cmd.Flags().Args()...)
		if f := cmd.Flags().Lookup("page-size"); f != nil && f.Changed {
			args = append(args, "--page-size", f.Value.String())
		}
		fmt.Fprintf(c.out, "-- more: feedctl %s --page-token %s\n", strings.Join(args, " "), next)
	}
}

func (c *client) tokenCmd() *cobra.Command {
	var (
		ttl    time.Duration
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "token USER...",
		Short: "Print tokens for users, signed with the development key in --data",
		Long: "Print a bearer token for USER, signed with the development key that the all-in-one\n" +
			"creates in its data dir (--data). Use it from other clients:\n" +
			"  grpcurl -H \"authorization: Bearer $(feedctl token alice)\" ...\n" +
			"For several users it prints a line \"USER TOKEN\" for each, and with --json one JSON\n" +
			"object {\"USER\": \"TOKEN\", ...}, the file the k6 scripts read (TOKENS):\n" +
			"  feedctl token --json alice bob > tokens.json",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := auth.DevSigner(c.data)
			if err != nil {
				return err
			}
			for _, u := range args {
				if err := feed.ValidateUserID("USER", u); err != nil {
					return err
				}
			}
			tokens := make(map[string]string, len(args))
			for _, u := range args {
				if tokens[u], err = s.Token(u, ttl); err != nil {
					return err
				}
			}
			switch {
			case asJSON:
				b, err := json.MarshalIndent(tokens, "", "  ")
				if err != nil {
					return err
				}
				fmt.Fprintf(c.out, "%s\n", b)
			case len(args) == 1:
				fmt.Fprintln(c.out, tokens[args[0]])
			default:
				for _, u := range args {
					fmt.Fprintln(c.out, u, tokens[u])
				}
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long the tokens are valid")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object mapping each USER to its token")
	return cmd
}

func (c *client) keygenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen DIR",
		Short: "Create a deployment's signing keys in DIR, unless they are there already",
		Long: "Create, mode 0600, the Ed25519 keys of a deployment without an identity provider of its own:\n" +
			"  " + auth.DevKeyFile + "      signs users' tokens (feedctl --data DIR, feedload --data DIR)\n" +
			"  " + devPubFile + "  its public half, for every instance's -auth-keys\n" +
			"  " + auth.ServiceKeyFile + "  signs calls between services: every instance's -auth-service-key\n" +
			"make cluster and the compose cluster run it. Keys already in DIR are kept.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			dev, err := auth.LoadOrCreateKey(filepath.Join(dir, auth.DevKeyFile))
			if err != nil {
				return err
			}
			if _, err := auth.LoadOrCreateKey(filepath.Join(dir, auth.ServiceKeyFile)); err != nil {
				return err
			}
			pub, err := auth.PublicKeyPEM(dev)
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, devPubFile), pub, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(c.out, "keys in %s: %s, %s, %s\n", dir, auth.DevKeyFile, devPubFile, auth.ServiceKeyFile)
			return nil
		},
	}
}

// devPubFile is the public half of auth.DevKeyFile, as keygen writes it.
const devPubFile = "auth-dev-key.pub.pem"

func (c *client) postCmd() *cobra.Command {
	var key string
	cmd := &cobra.Command{
		Use:   "post AUTHOR TEXT...",
		Short: "Create a post",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			pc, err := c.posts()
			if err != nil {
				return err
			}
			ctx, cancel := c.call(cmd)
			defer cancel()
			resp, err := pc.CreatePost(ctx, &feedv1.CreatePostRequest{AuthorId: args[0], Text: strings.Join(args[1:], " "), IdempotencyKey: key})
			if err != nil {
				return err
			}
			c.printPost(resp.Post)
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "idempotency key: a retry with the same key returns the same post")
	return cmd
}

func (c *client) getCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get POST_ID",
		Short: "Show one post",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pc, err := c.posts()
			if err != nil {
				return err
			}
			ctx, cancel := c.call(cmd)
			defer cancel()
			resp, err := pc.GetPost(ctx, &feedv1.GetPostRequest{PostId: args[0]})
			if err != nil {
				return err
			}
			c.printPost(resp.Post)
			return nil
		},
	}
}

func (c *client) deleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete AUTHOR POST_ID",
		Short: "Delete one of AUTHOR's posts",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			pc, err := c.posts()
			if err != nil {
				return err
			}
			ctx, cancel := c.call(cmd)
			defer cancel()
			if _, err := pc.DeletePost(ctx, &feedv1.DeletePostRequest{AuthorId: args[0], PostId: args[1]}); err != nil {
				return err
			}
			fmt.Fprintf(c.out, "deleted %s\n", args[1])
			return nil
		},
	}
}

// paging adds --page-size and --page-token to cmd.
func paging(cmd *cobra.Command) (size *int32, token *string) {
	size, token = new(int32), new(string)
	cmd.Flags().Int32Var(size, "page-size", 0, "entries per page (0: the server default, 20)")
	cmd.Flags().StringVar(token, "page-token", "", "next_page_token of the previous page")
	return size, token
}

func (c *client) postsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "posts AUTHOR",
		Short: "List AUTHOR's own posts, newest first",
		Args:  cobra.ExactArgs(1),
	}
	size, token := paging(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		pc, err := c.posts()
		if err != nil {
			return err
		}
		ctx, cancel := c.call(cmd)
		defer cancel()
		resp, err := pc.ListUserPosts(ctx, &feedv1.ListUserPostsRequest{AuthorId: args[0], PageSize: *size, PageToken: *token})
		if err != nil {
			return err
		}
		for _, p := range resp.Posts {
			c.printPost(p)
		}
		c.printNext(cmd, resp.NextPageToken)
		return nil
	}
	return cmd
}

func (c *client) followCmd(follow bool) *cobra.Command {
	use, short := "follow FOLLOWER FOLLOWEE", "Make FOLLOWER follow FOLLOWEE"
	if !follow {
		use, short = "unfollow FOLLOWER FOLLOWEE", "Make FOLLOWER stop following FOLLOWEE"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			gc, err := c.graph()
			if err != nil {
				return err
			}
			ctx, cancel := c.call(cmd)
			defer cancel()
			if follow {
				_, err = gc.Follow(ctx, &feedv1.FollowRequest{FollowerId: args[0], FolloweeId: args[1]})
			} else {
				_, err = gc.Unfollow(ctx, &feedv1.UnfollowRequest{FollowerId: args[0], FolloweeId: args[1]})
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(c.out, "%s %sed %s\n", args[0], cmd.Name(), args[1])
			return nil
		},
	}
}

func (c *client) listCmd(which string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   which + " USER",
		Short: "List USER's " + which,
		Args:  cobra.ExactArgs(1),
	}
	size, token := paging(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		gc, err := c.graph()
		if err != nil {
			return err
		}
		ctx, cancel := c.call(cmd)
		defer cancel()
		var ids []string
		var next string
		if which == "followers" {
			resp, err := gc.ListFollowers(ctx, &feedv1.ListFollowersRequest{UserId: args[0], PageSize: *size, PageToken: *token})
			if err != nil {
				return err
			}
			ids, next = resp.UserIds, resp.NextPageToken
		} else {
			resp, err := gc.ListFollowing(ctx, &feedv1.ListFollowingRequest{UserId: args[0], PageSize: *size, PageToken: *token})
			if err != nil {
				return err
			}
			ids, next = resp.UserIds, resp.NextPageToken
		}
		for _, id := range ids {
			fmt.Fprintln(c.out, id)
		}
		c.printNext(cmd, next)
		return nil
	}
	return cmd
}

func (c *client) timelineCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "timeline USER",
		Short: "Show USER's home timeline, newest first",
		Args:  cobra.ExactArgs(1),
	}
	size, token := paging(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		tc, err := c.timelines()
		if err != nil {
			return err
		}
		ctx, cancel := c.call(cmd)
		defer cancel()
		resp, err := tc.GetHomeTimeline(ctx, &feedv1.GetHomeTimelineRequest{UserId: args[0], PageSize: *size, PageToken: *token})
		if err != nil {
			return err
		}
		if len(resp.Posts) == 0 && *token == "" {
			fmt.Fprintln(c.out, "(empty timeline)")
		}
		for _, p := range resp.Posts {
			c.printPost(p)
		}
		c.printNext(cmd, resp.NextPageToken)
		return nil
	}
	return cmd
}

func (c *client) watchCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "watch USER",
		Short: "Stream new posts into USER's home timeline until Ctrl-C",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tc, err := c.timelines()
			if err != nil {
				return err
			}
			stream, err := tc.StreamHomeTimeline(cmd.Context(), &feedv1.StreamHomeTimelineRequest{UserId: args[0]})
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "watching %s's home timeline; Ctrl-C to stop\n", args[0])
			for {
				resp, err := stream.Recv()
				if err != nil {
					if cmd.Context().Err() != nil || err == io.EOF {
						return nil
					}
					return err
				}
				c.printPost(resp.Post)
			}
		},
	}
}

// bus connects to the deployment's event log, for the dead-letter commands.
func (c *client) bus(ctx context.Context) (event.Admin, func(), error) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	switch c.busKind {
	case node.BusJetStream:
	case node.BusKafka:
		if c.kafka == "" {
			return nil, nil, fmt.Errorf("--kafka-brokers (or HERALD_KAFKA_BROKERS) is required with --bus kafka: dead letters live in Kafka")
		}
		user, password, err := c.kafkaLogin.Read("kafka")
		if err != nil {
			return nil, nil, err
		}
		kb, err := kafkabus.New(ctx, kafkabus.Config{Brokers: strings.Split(c.kafka, ","), User: user, Password: password, Namespace: c.ns, ClientID: "feedctl"}, quiet)
		if err != nil {
			return nil, nil, err
		}
		return kb, kb.Close, nil
	default:
		return nil, nil, fmt.Errorf("--bus %q: want %s or %s", c.busKind, node.BusJetStream, node.BusKafka)
	}
	if c.nats == "" {
		return nil, nil, fmt.Errorf("--nats (or HERALD_NATS_URL) is required: dead letters live in NATS JetStream")
	}
	opts := []nats.Option{nats.Name("feedctl")}
	if user, password, err := c.natsLogin.Read("nats"); err != nil {
		return nil, nil, err
	} else if user != "" {
		opts = append(opts, nats.UserInfo(user, password))
	}
	nc, err := nats.Connect(c.nats, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("nats %s: %w", c.nats, err)
	}
	b, err := bus.New(ctx, nc, bus.Config{Namespace: c.ns}, quiet)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return b, nc.Close, nil
}

func (c *client) deadLettersCmd() *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "deadletters",
		Short: "List events that the fan-out gave up on, with the reason",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := c.call(cmd)
			defer cancel()
			b, done, err := c.bus(ctx)
			if err != nil {
				return err
			}
			defer done()
			dead, err := b.DeadLetters(ctx, limit)
			if err != nil {
				return err
			}
			if len(dead) == 0 {
				fmt.Fprintln(c.out, "(no dead letters)")
			}
			for _, d := range dead {
				fmt.Fprintf(c.out, "%d  %s  %s  consumer=%s  %s\n", d.Seq, d.Time.Local().Format("2006-01-02 15:04:05"), d.Kind, d.Consumer, d.Reason)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 100, "most dead letters to list")
	return cmd
}

func (c *client) replayCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "replay [SEQ...]",
		Short: "Send dead letters back to their consumer (by sequence, or --all)",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := c.call(cmd)
			defer cancel()
			b, done, err := c.bus(ctx)
			if err != nil {
				return err
			}
			defer done()
			var seqs []uint64
			if all {
				dead, err := b.DeadLetters(ctx, 1<<20)
				if err != nil {
					return err
				}
				for _, d := range dead {
					seqs = append(seqs, d.Seq)
				}
			}
			for _, a := range args {
				seq, err := strconv.ParseUint(a, 10, 64)
				if err != nil {
					return fmt.Errorf("bad sequence %q: %w", a, err)
				}
				seqs = append(seqs, seq)
			}
			if len(seqs) == 0 {
				return fmt.Errorf("name the dead letters to replay, or pass --all")
			}
			for _, seq := range seqs {
				if err := b.Replay(ctx, seq); err != nil {
					return err
				}
				fmt.Fprintf(c.out, "replayed %d\n", seq)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "replay every dead letter")
	return cmd
}

// healthCmd asks a process's gRPC health service whether it serves: the
// probe of a container that has no read of its own to probe with (the
// fan-out), and what a load balancer asks.
func (c *client) healthCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "health [SERVICE]",
		Short: "Check that the process at --addr serves (SERVICE, such as feed.v1.TimelineService, or the whole process); exits 1 unless SERVING",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if c.etcd != "" {
				return errors.New("health checks one process: name it with --addr, and clear --etcd (--etcd=)")
			}
			cc, err := c.conn("health")
			if err != nil {
				return err
			}
			ctx, cancel := c.call(cmd)
			defer cancel()
			req := &healthpb.HealthCheckRequest{}
			if len(args) == 1 {
				req.Service = args[0]
			}
			resp, err := healthpb.NewHealthClient(cc).Check(ctx, req)
			if err != nil {
				return err
			}
			if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				return fmt.Errorf("%s: %v", cmp.Or(req.Service, "the process"), resp.GetStatus())
			}
			fmt.Fprintln(c.out, resp.GetStatus())
			return nil
		},
	}
}

// migrateCmd creates and migrates the Cassandra keyspace, as every service
// does at start: the compose cluster's one-shot schema job, and a
// deployment's before it starts or upgrades its instances.
func (c *client) migrateCmd() *cobra.Command {
	var cfg backend.StoreConfig
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create the Cassandra keyspace if it is missing and apply the schema migrations it lacks; running it again changes nothing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.Kind = "cassandra"
			if err := cfg.Check("feedctl migrate"); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), max(c.timeout, time.Minute))
			defer cancel()
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			s, err := backend.OpenStore(ctx, &cfg, quiet)
			if err != nil {
				return err
			}
			defer s.Close()
			newest, applied, err := s.SchemaVersion(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.out, "keyspace %s on %s: schema at migration %d (%d applied)\n", cfg.Keyspace, strings.Join(cfg.Hosts, ","), newest, applied)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&cfg.Hosts, "cassandra", splitList(os.Getenv("HERALD_CASSANDRA_HOSTS")), "comma-separated Cassandra hosts, host:port (HERALD_CASSANDRA_HOSTS)")
	f.StringVar(&cfg.Keyspace, "cassandra-keyspace", cmp.Or(os.Getenv("HERALD_CASSANDRA_KEYSPACE"), cassandrastore.DefaultKeyspace), "keyspace to create and migrate (HERALD_CASSANDRA_KEYSPACE)")
	f.StringVar(&cfg.Replication, "cassandra-replication", cmp.Or(os.Getenv("HERALD_CASSANDRA_REPLICATION"), cassandrastore.DefaultReplication), "CQL replication map of a new keyspace (HERALD_CASSANDRA_REPLICATION)")
	f.StringVar(&cfg.Consistency, "cassandra-consistency", cmp.Or(os.Getenv("HERALD_CASSANDRA_CONSISTENCY"), cassandrastore.DefaultConsistency), "consistency level of the schema read (HERALD_CASSANDRA_CONSISTENCY)")
	f.StringVar(&cfg.Login.User, "cassandra-user", os.Getenv("HERALD_CASSANDRA_USER"), "user to log in to Cassandra as (HERALD_CASSANDRA_USER)")
	f.StringVar(&cfg.Login.PasswordFile, "cassandra-password-file", os.Getenv("HERALD_CASSANDRA_PASSWORD_FILE"), "file holding --cassandra-user's password (HERALD_CASSANDRA_PASSWORD_FILE)")
	return cmd
}

// splitList splits a comma-separated variable, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
