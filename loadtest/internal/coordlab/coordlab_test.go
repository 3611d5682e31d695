package coordlab

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"golang.org/x/sync/errgroup"

	"github.com/herald-feed/herald/services/platform/testenv"
	"github.com/herald-feed/herald/services/platform/waitfor"
)

// TestMain doubles as the lab's holder process: the failover and fencing
// tests start this test binary with "holder --config JSON", as labcoord
// starts itself.
func TestMain(m *testing.M) {
	if len(os.Args) == 4 && os.Args[1] == "holder" && os.Args[2] == "--config" {
		var cfg HolderConfig
		if err := json.Unmarshal([]byte(os.Args[3]), &cfg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if err := RunHolder(context.Background(), cfg, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The tests run on the ZooKeeper in HERALD_LAB_ZK (comma-separated
// host:port): the single node of deploy/local/zookeeper.sh, or the lab's
// ensemble (zookeeper.sh env [ensemble] prints the variable). On etcd they
// run on HERALD_LAB_ETCD, the lab's cluster, which has no login; without
// it, on the shared test etcd of `make servers`, with Herald's login
// (testenv), under the key prefix herald/, which is all that login may
// touch.
const testPrefix = "herald/lab-coordination-test"

func testZK(t *testing.T) []string {
	t.Helper()
	if v := os.Getenv("HERALD_LAB_ZK"); v != "" {
		return strings.Split(v, ",") // the lab's ensemble
	}
	return testenv.ZooKeeper(t) // the test node of make servers; skips, or fails in CI, without it
}

func testEtcd(t *testing.T) Servers {
	t.Helper()
	if v := os.Getenv("HERALD_LAB_ETCD"); v != "" {
		return Servers{Etcd: strings.Split(v, ",")}
	}
	cfg := testenv.EtcdConfig(t) // skips, or fails in CI, without the shared etcd
	return Servers{Etcd: cfg.Endpoints, EtcdUser: cfg.Username, EtcdPasswordFile: os.Getenv("HERALD_ETCD_PASSWORD_FILE")}
}

func testServers(t *testing.T) Servers {
	t.Helper()
	s := testEtcd(t)
	s.ZK = testZK(t)
	return s
}

func randomName(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func dialZK(t *testing.T, servers []string) *zk.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitfor.Deadline)
	defer cancel()
	conn, err := DialZK(ctx, servers, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	return conn
}

func etcdSession(t *testing.T, s Servers) (*clientv3.Client, *concurrency.Session) {
	t.Helper()
	cli, err := s.DialEtcd(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if err != nil {
		t.Fatalf("etcd session on %v: %v", s.Etcd, err)
	}
	t.Cleanup(func() { _ = sess.Close() })
	return cli, sess
}

// testLab is a Lab under a fresh root, deleted when the test ends.
func testLab(t *testing.T) *Lab {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	lab, err := NewLab(t.Context(), testServers(t), []string{exe, "holder"}, testPrefix+"/"+randomName(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(context.Background()); err != nil {
			t.Errorf("cleaning up the lab's znodes and keys: %v", err)
		}
	})
	return lab
}

// lockMaker returns the i-th contender's Locker, each on its own
// connection or session.
type lockMaker func(t *testing.T, i int) Locker

func lockMakers(t *testing.T) map[string]lockMaker {
	zks := testZK(t)
	etcd := testEtcd(t)
	root := testPrefix + "/" + randomName(t)
	zkRoot := "/" + root
	t.Cleanup(func() {
		conn, err := DialZK(context.Background(), zks, 10*time.Second)
		if err == nil {
			_ = DeleteZKTree(conn, zkRoot)
			conn.Close()
		}
		if cli, err := etcd.DialEtcd(context.Background()); err == nil {
			_, _ = cli.Delete(context.Background(), root+"/", clientv3.WithPrefix())
			_ = cli.Close()
		}
	})
	return map[string]lockMaker{
		RecipeZKSequential: func(t *testing.T, _ int) Locker {
			return NewZKLock(dialZK(t, zks), zkRoot+"/sequential", nil)
		},
		RecipeZKNaive: func(t *testing.T, _ int) Locker {
			conn := dialZK(t, zks)
			if err := EnsureZKPath(conn, zkRoot+"/naive"); err != nil {
				t.Fatal(err)
			}
			return NewZKNaiveLock(conn, zkRoot+"/naive/lock", nil)
		},
		RecipeEtcdMutex: func(t *testing.T, _ int) Locker {
			_, s := etcdSession(t, etcd)
			return NewEtcdMutex(s, root+"/mutex")
		},
		RecipeEtcdNaive: func(t *testing.T, _ int) Locker {
			_, s := etcdSession(t, etcd)
			return NewEtcdNaiveLock(s, root+"/naive")
		},
	}
}

// TestLocksExcludeAndFence runs contenders that each add to a shared
// counter under the lock, reading it, yielding, then writing it: without
// mutual exclusion increments are lost. The count must come out exact, no
// two contenders may be inside at once, and each holder's fencing token
// must be above the one before.
func TestLocksExcludeAndFence(t *testing.T) {
	const contenders, rounds = 6, 8
	for name, mk := range lockMakers(t) {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			lockers := make([]Locker, contenders)
			for i := range lockers {
				lockers[i] = mk(t, i)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 2*waitfor.Deadline)
			defer cancel()
			var (
				counter atomic.Int64
				inside  atomic.Int32
				mu      sync.Mutex
				tokens  []int64
			)
			g, gctx := errgroup.WithContext(ctx)
			for _, l := range lockers {
				g.Go(func() error {
					for range rounds {
						token, err := l.Lock(gctx)
						if err != nil {
							return err
						}
						if n := inside.Add(1); n != 1 {
							return fmt.Errorf("%d contenders inside the lock at once", n)
						}
						mu.Lock()
						tokens = append(tokens, token)
						mu.Unlock()
						v := counter.Load()
						runtime.Gosched()
						counter.Store(v + 1)
						inside.Add(-1)
						if err := l.Unlock(gctx); err != nil {
							return err
						}
					}
					return nil
				})
			}
			if err := g.Wait(); err != nil {
				t.Fatal(err)
			}
			if got, want := counter.Load(), int64(contenders*rounds); got != want {
				t.Errorf("counter = %d; want %d (increments lost: mutual exclusion broken)", got, want)
			}
			for i := 1; i < len(tokens); i++ {
				if tokens[i] <= tokens[i-1] {
					t.Errorf("token of acquisition %d = %d, not above the previous holder's %d (all: %v)", i, tokens[i], tokens[i-1], tokens)
					break
				}
			}
		})
	}
}

// TestUnlockWithoutLock checks the ErrNotHeld contract of every lock.
func TestUnlockWithoutLock(t *testing.T) {
	for name, mk := range lockMakers(t) {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			if err := mk(t, 0).Unlock(t.Context()); !errors.Is(err, ErrNotHeld) {
				t.Errorf("Unlock before Lock = %v; want ErrNotHeld", err)
			}
		})
	}
}

// TestStaleHolderIsFenced ends holder A's session or lease while A still
// thinks it holds the lock (what a long pause does), lets B take the lock,
// and checks that B's token is higher, so that a fenced resource refuses
// A's late write while an unfenced one takes it over B's.
func TestStaleHolderIsFenced(t *testing.T) {
	zks := testZK(t)
	etcd := testEtcd(t)
	root := testPrefix + "/" + randomName(t)
	cases := map[string]func(t *testing.T) (a, b Locker, endA func()){
		"zookeeper": func(t *testing.T) (Locker, Locker, func()) {
			connA := dialZK(t, zks)
			connB := dialZK(t, zks)
			t.Cleanup(func() { _ = DeleteZKTree(connB, "/"+root) })
			return NewZKLock(connA, "/"+root+"/fenced", nil), NewZKLock(connB, "/"+root+"/fenced", nil), connA.Close
		},
		"etcd": func(t *testing.T) (Locker, Locker, func()) {
			cliA, sa := etcdSession(t, etcd)
			_, sb := etcdSession(t, etcd)
			// Revoking A's lease from outside is what its expiry does.
			endA := func() {
				if _, err := cliA.Revoke(t.Context(), sa.Lease()); err != nil {
					t.Fatal(err)
				}
			}
			return NewEtcdMutex(sa, root+"/fenced"), NewEtcdMutex(sb, root+"/fenced"), endA
		},
	}
	for name, setup := range cases {
		t.Run(name, func(t *testing.T) {
			a, b, endA := setup(t)
			ctx, cancel := context.WithTimeout(t.Context(), waitfor.Deadline)
			defer cancel()
			tokenA, err := a.Lock(ctx)
			if err != nil {
				t.Fatal(err)
			}
			endA()
			tokenB, err := b.Lock(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tokenB <= tokenA {
				t.Fatalf("B's token %d is not above stale A's %d", tokenB, tokenA)
			}
			rs := NewResources()
			rs.Write(tokenB, "B")
			w := rs.Write(tokenA, "A")
			if !w.Unfenced.Accepted || w.Fenced.Accepted {
				t.Errorf("A's stale write: unfenced accepted %v, fenced accepted %v; want true, false", w.Unfenced.Accepted, w.Fenced.Accepted)
			}
			if got := rs.Fenced.Value(); got != "B" {
				t.Errorf("fenced resource holds %q; want B's write", got)
			}
			if got := rs.Unfenced.Value(); got != "A" {
				t.Errorf("unfenced resource holds %q; want A's late write over B's", got)
			}
			if err := b.Unlock(ctx); err != nil {
				t.Error(err)
			}
		})
	}
}

// elector is a test candidate: its Elector and what ends its session.
type elector struct {
	id  string
	e   Elector
	end func()
}

// TestElections campaigns three candidates: exactly one leads, and every
// candidate sees it as the leader; when it resigns exactly one other leads;
// when that one's session ends the last one leads. Terms increase.
func TestElections(t *testing.T) {
	zks := testZK(t)
	etcd := testEtcd(t)
	root := testPrefix + "/" + randomName(t)
	systems := map[string]func(t *testing.T, id string) elector{
		"zookeeper": func(t *testing.T, id string) elector {
			conn := dialZK(t, zks)
			return elector{id, NewZKElection(conn, "/"+root+"/election", id, nil), conn.Close}
		},
		"etcd": func(t *testing.T, id string) elector {
			_, s := etcdSession(t, etcd)
			return elector{id, NewEtcdElection(s, root+"/election", id), func() { _ = s.Close() }}
		},
	}
	t.Cleanup(func() {
		conn, err := DialZK(context.Background(), zks, 10*time.Second)
		if err == nil {
			_ = DeleteZKTree(conn, "/"+root)
			conn.Close()
		}
	})
	for name, mk := range systems {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 2*waitfor.Deadline)
			defer cancel()
			cands := []elector{mk(t, "c0"), mk(t, "c1"), mk(t, "c2")}
			type win struct {
				id   string
				term int64
				err  error
			}
			wins := make(chan win, len(cands))
			for _, c := range cands {
				go func() {
					term, err := c.e.Campaign(ctx)
					wins <- win{c.id, term, err}
				}()
			}
			var leaders []win
			next := func() win {
				t.Helper()
				select {
				case w := <-wins:
					if w.err != nil {
						t.Fatalf("campaign of %s: %v", w.id, w.err)
					}
					leaders = append(leaders, w)
					return w
				case <-time.After(waitfor.Deadline):
					t.Fatalf("no new leader within %v (leaders so far: %v)", waitfor.Deadline, leaders)
					return win{}
				}
			}
			byID := func(id string) elector {
				for _, c := range cands {
					if c.id == id {
						return c
					}
				}
				t.Fatalf("no candidate %s", id)
				return elector{}
			}
			// exactlyOne checks that every candidate sees w as the leader, and
			// that no further campaign has returned meanwhile.
			exactlyOne := func(w win) {
				t.Helper()
				for _, c := range cands {
					got, err := c.e.Leader(ctx)
					if err != nil || got != w.id {
						t.Fatalf("%s sees leader %q (%v); want %s", c.id, got, err, w.id)
					}
				}
				select {
				case other := <-wins:
					t.Fatalf("%s also won (term %d) while %s leads", other.id, other.term, w.id)
				default:
				}
			}
			first := next()
			exactlyOne(first)
			if err := byID(first.id).e.Resign(ctx); err != nil {
				t.Fatal(err)
			}
			second := next()
			if second.id == first.id || second.term <= first.term {
				t.Fatalf("after %s resigned (term %d): leader %s, term %d; want another candidate with a higher term", first.id, first.term, second.id, second.term)
			}
			exactlyOne(second)
			byID(second.id).end()
			third := next()
			if third.id == first.id || third.id == second.id || third.term <= second.term {
				t.Fatalf("after %s's session ended (term %d): leader %s, term %d; want the last candidate with a higher term", second.id, second.term, third.id, third.term)
			}
			if got, err := byID(third.id).e.Leader(ctx); err != nil || got != third.id {
				t.Fatalf("%s sees leader %q (%v); want itself", third.id, got, err)
			}
			if err := byID(third.id).e.Resign(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := byID(third.id).e.Leader(ctx); !errors.Is(err, ErrNoLeader) {
				t.Errorf("Leader after the last candidate resigned = %v; want ErrNoLeader", err)
			}
		})
	}
}

// TestHolderProtocol runs RunHolder in process: it holds the lock, writes
// to the resources on "write", and releases the lock when its input ends.
func TestHolderProtocol(t *testing.T) {
	servers := testServers(t)
	root := testPrefix + "/" + randomName(t)
	for _, system := range []string{SystemZK, SystemEtcd} {
		t.Run(system, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 2*waitfor.Deadline)
			defer cancel()
			rs := NewResources()
			srv := httptest.NewServer(rs.Handler())
			defer srv.Close()
			path := root + "/holder"
			if system == SystemZK {
				path = "/" + path
			}
			cfg := HolderConfig{Servers: servers, System: system, Recipe: RecipeLock, Path: path, TTL: 5 * time.Second, ID: "h", Resource: srv.URL}
			inR, inW := io.Pipe()
			outR, outW := io.Pipe()
			done := make(chan error, 1)
			go func() {
				done <- RunHolder(ctx, cfg, inR, outW)
				outW.Close()
			}()
			lines := bufio.NewScanner(outR)
			if !lines.Scan() {
				t.Fatalf("holder printed nothing: %v", <-done)
			}
			tok, ok := strings.CutPrefix(lines.Text(), "held ")
			token, err := strconv.ParseInt(tok, 10, 64)
			if !ok || err != nil {
				t.Fatalf("holder printed %q; want held <token>", lines.Text())
			}
			fmt.Fprintln(inW, "check")
			if !lines.Scan() || lines.Text() != "checked true" {
				t.Fatalf("holder printed %q after check; want checked true", lines.Text())
			}
			fmt.Fprintln(inW, "write hello")
			if !lines.Scan() {
				t.Fatalf("holder printed nothing after write: %v", <-done)
			}
			js, ok := strings.CutPrefix(lines.Text(), "wrote ")
			var w holderWrote
			if !ok || json.Unmarshal([]byte(js), &w) != nil {
				t.Fatalf("holder printed %q; want wrote <json>", lines.Text())
			}
			if !w.Writes.Fenced.Accepted || !w.Writes.Unfenced.Accepted || !w.BelievedAlive || w.Writes.Fenced.Token != token {
				t.Errorf("holder's write = %+v; want accepted by both with token %d, session alive", w, token)
			}
			if got := rs.Fenced.Value(); got != "hello" {
				t.Errorf("fenced resource holds %q; want hello", got)
			}
			inW.Close()
			if err := <-done; err != nil {
				t.Fatalf("RunHolder: %v", err)
			}
			// Released: another client takes the lock at once.
			var l Locker
			if system == SystemZK {
				l = NewZKLock(dialZK(t, servers.ZK), path, nil)
			} else {
				_, s := etcdSession(t, servers)
				l = NewEtcdMutex(s, path)
			}
			lctx, lcancel := context.WithTimeout(ctx, waitfor.Deadline)
			defer lcancel()
			if _, err := l.Lock(lctx); err != nil {
				t.Fatalf("lock after the holder released it: %v", err)
			}
			if err := l.Unlock(ctx); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestMeasureHandoffs checks the hand-off measurement's bookkeeping on
// every lock: the number of hand-offs it was asked for, and no overlap or
// token regression. The latencies it reports are not checked: they are
// the measurement.
func TestMeasureHandoffs(t *testing.T) {
	lab := testLab(t)
	for _, rec := range lab.LockRecipes("test") {
		t.Run(strings.ReplaceAll(rec.Name, " ", "_"), func(t *testing.T) {
			r := MeasureHandoffs(t.Context(), rec, 3, 12, 0, 2*waitfor.Deadline)
			if r.Error != "" || r.Handoffs != 12 || r.Overlaps != 0 || r.TokenRegressions != 0 {
				t.Errorf("MeasureHandoffs = %+v; want 12 hand-offs, no overlap, no token regression, no error", r)
			}
		})
	}
}

// TestFailoverAndFencingDrills runs the drills with holder processes (this
// test binary, see TestMain): one failover trial of each recipe, and the
// fencing drill on each system. Only outcomes are checked, not how long
// the failover took.
func TestFailoverAndFencingDrills(t *testing.T) {
	lab := testLab(t)
	const ttl = 2 * time.Second
	for _, system := range []string{SystemZK, SystemEtcd} {
		for _, recipe := range []string{RecipeLock, RecipeElection} {
			t.Run("failover_"+system+"_"+recipe, func(t *testing.T) {
				t.Parallel()
				f := lab.MeasureFailover(t.Context(), system, recipe, ttl, 1)
				if f.Error != "" || len(f.TrialsMs) != 1 {
					t.Errorf("MeasureFailover = %+v; want one trial and no error", f)
				}
			})
		}
		t.Run("fencing_"+system, func(t *testing.T) {
			t.Parallel()
			f := lab.FencingDrill(t.Context(), system, ttl, 1)
			if f.Error != "" || len(f.Trials) != 1 {
				t.Fatalf("FencingDrill = %+v; want one trial and no error", f)
			}
			tr := f.Trials[0]
			if !tr.CheckedAlive {
				t.Errorf("A's check before the pause found its session or lease gone")
			}
			if tr.NewToken <= tr.StaleToken {
				t.Errorf("new token %d is not above the stale %d", tr.NewToken, tr.StaleToken)
			}
			if !tr.StaleWrite.Unfenced.Accepted || tr.StaleWrite.Fenced.Accepted {
				t.Errorf("stale write: unfenced accepted %v, fenced accepted %v; want true, false", tr.StaleWrite.Unfenced.Accepted, tr.StaleWrite.Fenced.Accepted)
			}
			if tr.FencedValue != newValue || tr.UnfencedValue != staleValue {
				t.Errorf("resources hold unfenced %q, fenced %q; want %q, %q", tr.UnfencedValue, tr.FencedValue, staleValue, newValue)
			}
		})
	}
}
