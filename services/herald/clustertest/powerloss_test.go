package clustertest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/procfs"

	"github.com/herald-feed/herald/services/platform/waitfor"
)

// A power cut, simulated. Killing a process does not lose what it wrote:
// the kernel's page cache keeps every write, synced or not, and writes it
// back later. A power cut loses what was not synced. syncTracker traces, with
// strace, every file-system call a set of processes makes under their
// store directories; PowerCut SIGKILLs them all at once and then rewinds the
// directories to what the trace says had reached the disk.
//
// strace rather than a FUSE file system (LazyFS): it needs no mount, no build
// and no change to where the servers keep their data, it sees the calls of
// processes already running (ptrace attach, as root), and its record is
// exact, since every call stops the tracee until strace has seen it. The cost
// is speed: every system call of a traced process stops (an attached process
// cannot use --seccomp-bpf), so a nats-server under it runs several times
// slower. A drill measures durability under it, not throughput.
//
// The model, as the trace is replayed: the worst case a power cut can leave
// on a Linux journaling file system such as this machine's ext4 with
// data=ordered, judged file by file and name by name:
//
//   - File data. A file keeps the size it had when a sync of it began: an
//     fsync or fdatasync that returned 0, a write through a descriptor opened
//     with O_SYNC or O_DSYNC (what it wrote, if it extends synced data), or
//     sync/syncfs. Everything past that is lost, as if the kernel had written
//     back nothing; in reality its flusher writes dirty pages back after
//     about 30 s (vm.dirty_expire_centisecs), so a real cut a few seconds
//     after the writes loses this much. A write that lands on bytes already
//     synced cannot be undone (their old contents are gone); the trace counts
//     them (powerCutReport.Overwrites). A sync covers the writes that returned
//     before it began, not ones that overlapped it.
//   - Names. A name made by creating a file, mkdir or rename survives if,
//     after it was made, its directory was fsynced, or (journaled model, the
//     default) the file or directory it names, or one below it, was synced:
//     ext4, XFS and btrfs persist a new inode's directory entries, up its
//     path, when it is fsynced, though POSIX does not promise it. Under the
//     strict model only the directory's fsync counts; PowerCut reports what
//     that model would lose besides (powerCutReport.StrictAlsoLoses). A
//     lost name goes: a new file or directory is removed with all below it,
//     and a file renamed from a name that had survived goes back to it.
//   - What cannot be undone is kept and reported: a rename over a file that
//     had a surviving name (the old file is gone; the new one is kept with
//     all its data, which is what ext4's auto_da_alloc makes of a committed
//     rename over a file: the one way this model errs toward keeping), and
//     an unlink or rmdir (the file may come back after a real cut; here it
//     stays gone).
//   - O_TRUNC and ftruncate shrink a file and what of it is synced at once.
//   - A write the kill cut short (strace never saw it return) may have
//     written any part of its data; none of it was synced, so it goes.
//
// Each name is judged on its own, not in the order a journal commits them,
// so a cut may combine outcomes ext4 would not: a raft log directory renamed
// away and emptied stays gone while the new one made in its place, never
// synced, is removed too, where ext4 would keep one of the two. Such a
// combination always loses more, never less, than a real cut could.
//
// Anything under the directories the model cannot follow (a write through
// a descriptor it did not see opened, dup, fallocate, links, a file on disk
// that the trace never made, a size that differs from the replay) fails the
// cut instead of being guessed at: the drill's claim is only as good as the
// trace. Memory-mapped writes do not show in a trace at all; nats-server
// makes none.

// straceSyscalls are the calls the tracker traces. The modelled ones are in
// fsModel.exit; the rest fail the cut if they touch the directories.
const straceSyscalls = "write,writev,pwrite64,pwritev,pwritev2,lseek,open,openat,openat2,creat,close," +
	"fsync,fdatasync,sync,syncfs,ftruncate,truncate,rename,renameat,renameat2,unlink,unlinkat,rmdir," +
	"mkdir,mkdirat,fallocate,copy_file_range,sendfile,splice,link,linkat,symlink,symlinkat,dup,dup2,dup3"

// syncTracker records what a set of running processes have synced under
// their directories, until PowerCut.
type syncTracker struct {
	pids  []int
	roots []string // the directories, absolute and without symlinks

	base   *fsModel // the state when tracing began, all of it synced
	trace  string   // strace's output
	errLog string   // strace's stderr
	cmd    *exec.Cmd
	exited chan struct{} // closed once strace has exited
	cut    bool
}

// startSyncTracker starts tracing the processes pids, which write under
// dirs. Each dir must belong to one of them alone (a descriptor is known by
// its number and file, not its process). It stops the processes (SIGSTOP)
// for the moment it takes to record every file and directory under dirs and
// every descriptor they hold there, fsync all of it (so the record is what is
// on disk) and attach strace; then it lets them go on (SIGCONT). At cleanup
// it detaches strace if PowerCut has not run.
func startSyncTracker(t testing.TB, pids []int, dirs []string) *syncTracker {
	t.Helper()
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Fatalf("the power-cut tracker needs strace: %v", err)
	}
	s := &syncTracker{pids: pids, exited: make(chan struct{})}
	for _, d := range dirs {
		abs, err := filepath.Abs(d)
		if err == nil {
			abs, err = filepath.EvalSymlinks(abs)
		}
		if err != nil {
			t.Fatalf("store directory %s: %v", d, err)
		}
		s.roots = append(s.roots, abs)
	}
	tmp := t.TempDir()
	s.trace, s.errLog = filepath.Join(tmp, "strace.out"), filepath.Join(tmp, "strace.err")

	stopped := time.Now()
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatalf("SIGSTOP pid %d: %v", pid, err)
		}
	}
	defer func() {
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGCONT)
		}
		t.Logf("tracing the file-system calls of pids %v under %d directories (%d files and directories, all synced); they were stopped for %v",
			pids, len(s.roots), len(s.base.nodes), time.Since(stopped).Round(time.Millisecond))
	}()
	waitfor.Until(t, waitfor.Deadline, "every thread of the traced processes to stop", func() (bool, any) {
		return allStopped(pids)
	})
	if s.base, err = takeBaseline(s.roots, pids); err != nil {
		t.Fatalf("record the store directories: %v", err)
	}

	errf, err := os.Create(s.errLog)
	if err != nil {
		t.Fatal(err)
	}
	defer errf.Close() // strace holds its own copy
	args := []string{"-f", "-x", "-s", "0", "-y", "-o", s.trace, "-e", "trace=" + straceSyscalls}
	for _, pid := range pids {
		args = append(args, "-p", strconv.Itoa(pid))
	}
	s.cmd = exec.Command(strace, args...)
	s.cmd.Stderr = errf
	s.cmd.SysProcAttr = sysProcAttr()
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start strace: %v", err)
	}
	go func() {
		s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		if !s.cut {
			s.cmd.Process.Signal(os.Interrupt) // strace detaches, and the processes run on
			<-s.exited
		}
	})
	waitfor.Until(t, waitfor.Deadline, "strace to attach to every process", func() (bool, any) {
		b, _ := os.ReadFile(s.errLog)
		select {
		case <-s.exited:
			t.Fatalf("strace exited while attaching: %s", b)
		default:
		}
		for _, pid := range pids {
			if !strings.Contains(string(b), fmt.Sprintf("Process %d attached", pid)) {
				return false, string(b)
			}
		}
		return true, nil
	})
	return s
}

// allStopped reports whether every thread of every process is stopped.
func allStopped(pids []int) (bool, any) {
	for _, pid := range pids {
		threads, err := procfs.AllThreads(pid)
		if err != nil {
			return false, err
		}
		for _, th := range threads {
			st, err := th.Stat()
			if err != nil {
				return false, err
			}
			if st.State != "T" && st.State != "t" {
				return false, fmt.Sprintf("pid %d thread %d in state %s", pid, th.PID, st.State)
			}
		}
	}
	return true, nil
}

// takeBaseline records every file and directory under roots and every
// descriptor the stopped processes hold on them, then fsyncs all of them.
func takeBaseline(roots []string, pids []int) (*fsModel, error) {
	m := newFSModel(roots)
	var files, dirs []string
	for _, root := range roots {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			switch {
			case d.IsDir():
				m.nodes[p] = &fsNode{dir: true, named: true}
				dirs = append(dirs, p)
			case info.Mode().IsRegular():
				m.nodes[p] = &fsNode{size: info.Size(), synced: info.Size(), named: true}
				files = append(files, p)
			default:
				return fmt.Errorf("%s: %v is neither a file nor a directory", p, info.Mode())
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for _, pid := range pids {
		proc, err := procfs.NewProc(pid)
		if err != nil {
			return nil, err
		}
		infos, err := proc.FileDescriptorsInfo()
		if err != nil {
			return nil, fmt.Errorf("descriptors of pid %d: %w", pid, err)
		}
		for _, info := range infos {
			target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, info.FD))
			if err != nil || !m.under(target) || m.nodes[target] == nil || m.nodes[target].dir {
				continue
			}
			fd, err1 := strconv.Atoi(info.FD)
			pos, err2 := strconv.ParseInt(info.Pos, 10, 64)
			flags, err3 := strconv.ParseInt(info.Flags, 8, 64)
			if err := errors.Join(err1, err2, err3); err != nil {
				return nil, fmt.Errorf("fdinfo %s of pid %d: %w", info.FD, pid, err)
			}
			m.fds[fdKey{fd, target}] = &fdState{off: pos, append: flags&syscall.O_APPEND != 0, sync: flags&syscall.O_DSYNC != 0}
		}
	}
	// Directories last and deepest first, so that each holds its synced
	// entries when it is synced.
	slices.Reverse(dirs)
	for _, p := range slices.Concat(files, dirs) {
		if err := fsyncPath(p); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func fsyncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// powerCutReport says what a power cut threw away, and what it kept that a
// real one might not have; after a Crash, what a power cut would have.
type powerCutReport struct {
	// Applied says the directories were rewound (PowerCut, not Crash).
	Applied bool
	// Truncated are the files cut back to their synced size, as "path: from
	// -> to bytes"; LostBytes adds up what they lost.
	Truncated []string
	LostBytes int64
	// Removed are files and directories whose names never became durable.
	Removed []string
	// Restored are files renamed back to the durable name they came from, as
	// "new -> old".
	Restored []string
	// Kept are changes a real cut might undo but this one cannot: renames
	// over a file with a durable name, and unlinks.
	Kept []string
	// Overwrites counts writes onto bytes already synced, which the cut
	// cannot undo.
	Overwrites int
	// StrictAlsoLoses is what the strict POSIX model of names would have
	// removed besides (fsync of a file does not make its name durable).
	StrictAlsoLoses []string
	// Syscalls counts the traced calls on the directories, and TraceLines
	// the lines of strace's output.
	Syscalls, TraceLines int
}

func (r powerCutReport) String() string {
	var b strings.Builder
	if !r.Applied {
		b.WriteString("crash, the files left as they are; a power cut would have done this. ")
	}
	fmt.Fprintf(&b, "power cut: %d file-system calls replayed (%d trace lines); %d files truncated (%d bytes lost), %d names removed, %d renames undone, %d changes kept, %d overwrites of synced bytes",
		r.Syscalls, r.TraceLines, len(r.Truncated), r.LostBytes, len(r.Removed), len(r.Restored), len(r.Kept), r.Overwrites)
	for _, l := range []struct {
		what  string
		items []string
	}{{"truncated", r.Truncated}, {"removed", r.Removed}, {"restored", r.Restored}, {"kept", r.Kept}, {"strict POSIX would also remove", r.StrictAlsoLoses}} {
		for _, it := range l.items {
			fmt.Fprintf(&b, "\n  %s %s", l.what, it)
		}
	}
	return b.String()
}

// PowerCut SIGKILLs every traced process at once (processes the caller
// killed already are fine), waits until they and strace are gone, and
// rewinds their directories to what had been synced, as the model in this
// file's comment says. The processes may then be started again on the same
// directories. It fails t, leaving the directories as they are, if the trace
// has anything the model cannot follow.
func (s *syncTracker) PowerCut(t testing.TB) powerCutReport {
	t.Helper()
	return s.end(t, true)
}

// Crash is PowerCut without the rewind: the processes die but the machine
// does not, so the page cache keeps everything they wrote. Its report says
// what a power cut would have lost. A drill runs it as the control that
// shows a SIGKILL alone loses nothing.
func (s *syncTracker) Crash(t testing.TB) powerCutReport {
	t.Helper()
	return s.end(t, false)
}

// end kills the processes, replays the trace, and applies the cut if rewind.
func (s *syncTracker) end(t testing.TB, rewind bool) powerCutReport {
	t.Helper()
	select {
	case <-s.exited:
		b, _ := os.ReadFile(s.errLog)
		t.Fatalf("strace exited before the power cut, so the trace is incomplete: %s", b)
	default:
	}
	s.cut = true
	for _, pid := range s.pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Errorf("SIGKILL pid %d: %v", pid, err)
		}
	}
	// strace exits once no thread it traces is left: nothing writes any more.
	select {
	case <-s.exited:
	case <-time.After(waitfor.Deadline):
		t.Fatalf("strace still running %v after SIGKILL of pids %v", waitfor.Deadline, s.pids)
	}

	f, err := os.Open(s.trace)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	journaled, strict := s.base.clone(false), s.base.clone(true)
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	lines := 0
	for sc.Scan() {
		lines++
		journaled.line(sc.Text())
		strict.line(sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", s.trace, err)
	}
	journaled.finish()
	strict.finish()
	problems := slices.Concat(journaled.problems, journaled.checkDisk())
	if len(problems) > 0 {
		t.Fatalf("the trace (%s) has what the power-cut model cannot follow; the directories are left as they are:\n  %s",
			s.trace, strings.Join(problems[:min(len(problems), 20)], "\n  "))
	}
	plan := journaled.plan()
	r := powerCutReport{Applied: rewind, Overwrites: journaled.overwrites, Syscalls: journaled.syscalls, TraceLines: lines}
	for _, a := range plan {
		if rewind {
			if err := a.apply(); err != nil {
				t.Fatalf("power cut: %v", err)
			}
		}
		switch a.op {
		case cutTruncate:
			r.Truncated = append(r.Truncated, fmt.Sprintf("%s: %d -> %d bytes", a.path, a.from, a.size))
			r.LostBytes += a.from - a.size
		case cutRemove:
			r.Removed = append(r.Removed, a.path)
		case cutRestore:
			r.Restored = append(r.Restored, a.path+" -> "+a.to)
		case cutKeep:
			r.Kept = append(r.Kept, a.path+": "+a.why)
		}
	}
	r.Kept = append(r.Kept, journaled.unlinked...)
	for _, a := range strict.plan() {
		if (a.op == cutRemove || a.op == cutRestore) && !slices.Contains(plan, a) {
			r.StrictAlsoLoses = append(r.StrictAlsoLoses, a.path)
		}
	}
	return r
}

// fsModel is the state of the directories as a trace is replayed into it:
// each file's and directory's size, synced size and whether its name is
// durable, and the open descriptors' offsets.
type fsModel struct {
	roots  []string
	strict bool // only a directory's fsync makes the names in it durable

	nodes   map[string]*fsNode // by current path
	fds     map[fdKey]*fdState
	pending map[string]string // thread -> the first half of its unfinished call
	onExit  map[string]func() // thread -> what its call, entered, makes durable if it succeeds

	syscalls   int
	overwrites int
	unlinked   []string // durable names unlinked, which a real cut might bring back
	problems   []string
}

// fsNode is a file or directory under its current path.
type fsNode struct {
	dir          bool
	size, synced int64
	// named says its name under the current path is durable. If not, origin
	// is the durable name it was renamed from ("" if none), and replaced
	// says a rename put it over a file with a durable name.
	named    bool
	origin   string
	replaced bool
	gen      int // counts renames, so that a sync does not vouch for a name made after it began
	// cutShort says a write to it was in flight at the kill: the trace
	// never saw how much it wrote, so the file may be longer on disk.
	cutShort bool
}

// fdKey is a descriptor: a number and the file it is open on.
type fdKey struct {
	fd   int
	path string
}

type fdState struct {
	off          int64
	append, sync bool
}

func newFSModel(roots []string) *fsModel {
	return &fsModel{roots: roots, nodes: map[string]*fsNode{}, fds: map[fdKey]*fdState{},
		pending: map[string]string{}, onExit: map[string]func(){}}
}

// clone returns a copy of a baseline (a model nothing was replayed into).
func (m *fsModel) clone(strict bool) *fsModel {
	c := newFSModel(m.roots)
	c.strict = strict
	for p, n := range m.nodes {
		cp := *n
		c.nodes[p] = &cp
	}
	for k, st := range m.fds {
		cp := *st
		c.fds[k] = &cp
	}
	return c
}

func (m *fsModel) under(p string) bool {
	for _, r := range m.roots {
		if p == r || strings.HasPrefix(p, r+"/") {
			return true
		}
	}
	return false
}

func (m *fsModel) isRoot(p string) bool { return slices.Contains(m.roots, p) }

func (m *fsModel) problem(format string, args ...any) {
	m.problems = append(m.problems, fmt.Sprintf(format, args...))
}

var (
	traceLine   = regexp.MustCompile(`^(\d+) +(.*)$`)
	resumedCall = regexp.MustCompile(`^<\.\.\. (\w+) resumed>(.*)$`)
	enteredCall = regexp.MustCompile(`^(\w+)\((.*)$`)
	wholeCall   = regexp.MustCompile(`^(\w+)\((.*)\)\s+=\s+(.*)$`)
	fdFirstArg  = regexp.MustCompile(`^(-?\d+)<(.*?)>(?:, (.*))?$`)
	returned    = regexp.MustCompile(`^(-?\d+|\?)(?:<(.*?)>)?`)
	anyFDArg    = regexp.MustCompile(`\d+<([^>]*)>`)
	// pathArgs are quoted path arguments, each with the directory
	// descriptor before it if there is one (openat's AT_FDCWD</cwd>).
	pathArgs = regexp.MustCompile(`(?:(?:AT_FDCWD|-?\d+)(?:<([^>]*)>)?, )?("(?:[^"\\]|\\.)*")`)
)

// line replays one line of strace -f -y output. A call another thread's
// output interrupted comes in two lines, "name(args <unfinished ...>" and
// "<... name resumed>rest"; its entry counts for syncs (what they cover)
// and its exit for everything else (what has happened).
func (m *fsModel) line(l string) {
	g := traceLine.FindStringSubmatch(l)
	if g == nil {
		return
	}
	tid, rest := g[1], g[2]
	if strings.HasPrefix(rest, "---") || strings.HasPrefix(rest, "+++") {
		return
	}
	if r := resumedCall.FindStringSubmatch(rest); r != nil {
		entry, ok := m.pending[tid]
		delete(m.pending, tid)
		if !ok {
			m.problem("thread %s: %q resumes a call the trace did not show entered", tid, l)
			return
		}
		m.whole(tid, entry+r[2], false)
		return
	}
	if entry, ok := strings.CutSuffix(rest, " <unfinished ...>"); ok {
		m.pending[tid] = entry
		if e := enteredCall.FindStringSubmatch(entry); e != nil {
			m.enter(tid, e[1], e[2])
		}
		return
	}
	m.whole(tid, rest, true)
}

// whole handles a call with its result; entered says its entry has not been
// seen yet.
func (m *fsModel) whole(tid, call string, entered bool) {
	c := wholeCall.FindStringSubmatch(call)
	if c == nil {
		return
	}
	name, args, ret := c[1], c[2], c[3]
	if entered {
		m.enter(tid, name, args)
	}
	effect := m.onExit[tid]
	delete(m.onExit, tid)
	r := returned.FindStringSubmatch(ret)
	if r == nil || r[1] == "?" {
		m.killedIn(name, args)
		return
	}
	if strings.HasPrefix(r[1], "-") {
		return // failed
	}
	if effect != nil {
		effect()
	}
	n, _ := strconv.ParseInt(r[1], 10, 64)
	m.exit(name, args, n, r[2])
}

// killedIn notes a call the kill cut short: a write may have written part
// of what it was given (never synced, so the cut throws it away). Any other
// call that changes the directories shows, if it took effect, as a
// difference checkDisk reports.
func (m *fsModel) killedIn(name, args string) {
	switch name {
	case "write", "writev", "pwrite64", "pwritev", "pwritev2":
		if _, p, _ := m.fdArg(args); m.nodes[p] != nil {
			m.nodes[p].cutShort = true
		}
	}
}

// finish ends the replay: the calls still unfinished were cut short by the
// kill.
func (m *fsModel) finish() {
	for tid, entry := range m.pending {
		if e := enteredCall.FindStringSubmatch(entry); e != nil {
			m.killedIn(e[1], e[2])
		}
		delete(m.pending, tid)
	}
}

// fdArg returns the path of a call's descriptor argument (or "" if it is not
// under the roots) and the arguments after it.
func (m *fsModel) fdArg(args string) (fd int, path, rest string) {
	g := fdFirstArg.FindStringSubmatch(args)
	if g == nil || strings.HasSuffix(g[2], " (deleted)") || !m.under(g[2]) {
		return 0, "", ""
	}
	fd, _ = strconv.Atoi(g[1])
	return fd, g[2], g[3]
}

// paths returns a call's quoted path arguments, made absolute against the
// directory descriptor before each, and the arguments after the last.
func (m *fsModel) paths(args string) (ps []string, rest string, ok bool) {
	ok = true
	end := 0
	for _, g := range pathArgs.FindAllStringSubmatchIndex(args, -1) {
		end = g[1]
		p, err := strconv.Unquote(args[g[4]:g[5]])
		if err != nil {
			m.problem("path argument %s: %v", args[g[4]:g[5]], err)
			ok = false
			continue
		}
		if !filepath.IsAbs(p) {
			if g[2] < 0 {
				m.problem("relative path %q without a directory in %q", p, args)
				ok = false
				continue
			}
			p = filepath.Join(args[g[2]:g[3]], p)
		}
		ps = append(ps, filepath.Clean(p))
	}
	return ps, args[end:], ok
}

// chain returns the nodes from p up to (not including) its root whose names
// are not yet durable, with their generations.
func (m *fsModel) chain(p string) map[*fsNode]int {
	refs := map[*fsNode]int{}
	for ; m.under(p) && !m.isRoot(p); p = filepath.Dir(p) {
		if n := m.nodes[p]; n != nil && !n.named {
			refs[n] = n.gen
		}
	}
	return refs
}

// children returns the nodes directly in directory p whose names are not
// yet durable.
func (m *fsModel) children(p string) map[*fsNode]int {
	refs := map[*fsNode]int{}
	for q, n := range m.nodes {
		if filepath.Dir(q) == p && q != p && !n.named {
			refs[n] = n.gen
		}
	}
	return refs
}

func nameDurable(refs map[*fsNode]int) {
	for n, gen := range refs {
		if n.gen == gen {
			n.named, n.origin, n.replaced = true, "", false
		}
	}
}

// enter takes what a sync covers when it begins; its effect applies if it
// returns 0.
func (m *fsModel) enter(tid, name, args string) {
	switch name {
	case "fsync", "fdatasync":
		_, p, _ := m.fdArg(args)
		n := m.nodes[p]
		if n == nil {
			if p != "" {
				m.problem("%s of %s, which the model does not have", name, p)
			}
			return
		}
		size := n.size
		refs := map[*fsNode]int{}
		if n.dir {
			refs = m.children(p)
		}
		if !m.strict {
			maps.Copy(refs, m.chain(p))
		}
		m.onExit[tid] = func() {
			if !n.dir {
				n.synced = size
			}
			nameDurable(refs)
		}
	case "write", "writev", "pwrite64", "pwritev", "pwritev2":
		// A write through an O_SYNC descriptor syncs the file's name, like
		// an fsync; its data is handled at exit, when its size is known.
		fd, p, _ := m.fdArg(args)
		if st := m.fds[fdKey{fd, p}]; st != nil && st.sync && !m.strict {
			refs := m.chain(p)
			m.onExit[tid] = func() { nameDurable(refs) }
		}
	case "sync", "syncfs":
		sizes := map[*fsNode]int64{}
		refs := map[*fsNode]int{}
		for _, n := range m.nodes {
			sizes[n] = n.size
			refs[n] = n.gen
		}
		m.onExit[tid] = func() {
			for n, size := range sizes {
				if !n.dir {
					n.synced = size
				}
			}
			nameDurable(refs)
		}
	}
}

// exit applies a call that returned ret (>= 0; retPath is the -y path of a
// returned descriptor).
func (m *fsModel) exit(name, args string, ret int64, retPath string) {
	switch name {
	case "open", "openat", "openat2", "creat":
		if !m.under(retPath) {
			return
		}
		m.syscalls++
		_, rest, _ := m.paths(args)
		if name == "creat" {
			rest = "O_CREAT|O_TRUNC"
		}
		n := m.nodes[retPath]
		switch {
		case n == nil && strings.Contains(rest, "O_CREAT"):
			n = &fsNode{}
			m.nodes[retPath] = n
		case n == nil:
			m.problem("%s opened %s, which the model does not have", name, retPath)
			return
		case strings.Contains(rest, "O_TRUNC") && !n.dir:
			n.size, n.synced = 0, 0
		}
		if !n.dir {
			m.fds[fdKey{int(ret), retPath}] = &fdState{
				append: strings.Contains(rest, "O_APPEND"),
				sync:   strings.Contains(rest, "O_SYNC") || strings.Contains(rest, "O_DSYNC"),
			}
		}
	case "close":
		if fd, p, _ := m.fdArg(args); p != "" {
			delete(m.fds, fdKey{fd, p})
		}
	case "write", "writev", "pwrite64", "pwritev", "pwritev2":
		fd, p, rest := m.fdArg(args)
		if p == "" {
			return
		}
		m.syscalls++
		st, n := m.fds[fdKey{fd, p}], m.nodes[p]
		if st == nil || n == nil {
			m.problem("%s on descriptor %d (%s), which the model did not see opened", name, fd, p)
			return
		}
		off := st.off
		if name != "write" && name != "writev" {
			// The offset is the last argument, or for pwritev2 the one
			// before its flags.
			fields := strings.Split(rest, ", ")
			i := len(fields) - 1
			if name == "pwritev2" {
				i--
			}
			var err error
			if off, err = strconv.ParseInt(fields[max(i, 0)], 10, 64); err != nil {
				m.problem("%s(%s): offset: %v", name, args, err)
				return
			}
		}
		if st.append { // Linux appends even for pwrite on an O_APPEND descriptor
			off = n.size
		}
		end := off + ret
		if name == "write" || name == "writev" {
			st.off = end
		}
		if off < n.synced {
			m.overwrites++
		}
		n.size = max(n.size, end)
		if st.sync && off <= n.synced {
			n.synced = max(n.synced, end)
		}
	case "lseek":
		if fd, p, _ := m.fdArg(args); p != "" {
			if st := m.fds[fdKey{fd, p}]; st != nil {
				st.off = ret
			}
		}
	case "ftruncate", "truncate":
		var p, rest string
		if name == "ftruncate" {
			_, p, rest = m.fdArg(args)
		} else if ps, r, ok := m.paths(args); ok && len(ps) == 1 && m.under(ps[0]) {
			p, rest = ps[0], strings.TrimPrefix(r, ", ")
		}
		if p == "" {
			return
		}
		m.syscalls++
		size, err := strconv.ParseInt(rest, 10, 64)
		n := m.nodes[p]
		if err != nil || n == nil {
			m.problem("%s(%s): not a known file and size", name, args)
			return
		}
		n.size, n.synced = size, min(n.synced, size)
	case "fsync", "fdatasync", "sync", "syncfs":
		m.syscalls++ // enter took what they cover
	case "mkdir", "mkdirat":
		ps, _, ok := m.paths(args)
		if !ok || len(ps) != 1 || !m.under(ps[0]) {
			return
		}
		m.syscalls++
		m.nodes[ps[0]] = &fsNode{dir: true}
	case "rename", "renameat", "renameat2":
		m.rename(args)
	case "unlink", "unlinkat", "rmdir":
		ps, _, ok := m.paths(args)
		if !ok || len(ps) != 1 || !m.under(ps[0]) {
			return
		}
		m.syscalls++
		p := ps[0]
		n := m.nodes[p]
		if n == nil {
			m.problem("%s of %s, which the model does not have", name, p)
			return
		}
		if n.named || n.origin != "" || n.replaced {
			m.unlinked = append(m.unlinked, p+": unlinked; a real cut may bring it back")
		}
		m.removeTree(p)
	default:
		// Calls the model does not follow: harmless off the roots.
		ps, _, _ := m.paths(args)
		for _, g := range anyFDArg.FindAllStringSubmatch(args, -1) {
			ps = append(ps, g[1])
		}
		if slices.ContainsFunc(ps, m.under) {
			m.problem("%s(%s) is not modelled", name, args)
		}
	}
}

func (m *fsModel) rename(args string) {
	ps, rest, ok := m.paths(args)
	if !ok || len(ps) != 2 || (!m.under(ps[0]) && !m.under(ps[1])) {
		return
	}
	m.syscalls++
	from, to := ps[0], ps[1]
	if !m.under(from) || !m.under(to) || strings.Contains(rest, "RENAME_EXCHANGE") || strings.Contains(rest, "RENAME_WHITEOUT") {
		m.problem("rename(%s) is not modelled", args)
		return
	}
	n := m.nodes[from]
	if n == nil {
		m.problem("rename of %s, which the model does not have", from)
		return
	}
	origin := n.origin
	if n.named {
		origin = from
	}
	replaced := false
	if old := m.nodes[to]; old != nil {
		replaced = old.named || old.replaced || old.origin != ""
		m.removeTree(to)
	}
	moved := func(p string) (string, bool) {
		if p == from || strings.HasPrefix(p, from+"/") {
			return to + strings.TrimPrefix(p, from), true
		}
		return "", false
	}
	nodes, fds := map[string]*fsNode{}, map[fdKey]*fdState{}
	for p, c := range m.nodes {
		if q, ok := moved(p); ok {
			delete(m.nodes, p)
			nodes[q] = c
		}
	}
	for k, st := range m.fds {
		if q, ok := moved(k.path); ok {
			delete(m.fds, k)
			fds[fdKey{k.fd, q}] = st
		}
	}
	maps.Copy(m.nodes, nodes)
	maps.Copy(m.fds, fds)
	n.gen++
	n.named, n.origin, n.replaced = false, origin, replaced
	if replaced {
		// The old file's contents are gone, so the cut keeps the new one;
		// ext4 (auto_da_alloc) writes a file renamed over another before
		// the rename commits.
		n.origin = ""
		if !n.dir {
			n.synced = n.size
		}
	}
}

func (m *fsModel) removeTree(p string) {
	for q := range m.nodes {
		if q == p || strings.HasPrefix(q, p+"/") {
			delete(m.nodes, q)
		}
	}
}

// checkDisk compares the model with the directories on disk: every file
// and directory, and every file's size (a file a write was cut short on may
// be longer: checkDisk takes its size from the disk).
func (m *fsModel) checkDisk() []string {
	var out []string
	seen := map[string]bool{}
	for _, root := range m.roots {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				out = append(out, err.Error())
				return nil
			}
			seen[p] = true
			n := m.nodes[p]
			if n == nil {
				out = append(out, p+" is on disk but the trace never made it")
				return nil
			}
			if n.dir != d.IsDir() {
				out = append(out, p+": a directory on disk or in the model, not both")
				return nil
			}
			info, err := d.Info()
			switch {
			case err != nil || n.dir || info.Size() == n.size:
			case n.cutShort && info.Size() > n.size:
				n.size = info.Size() // what the cut-short write wrote, unsynced
			default:
				out = append(out, fmt.Sprintf("%s: %d bytes on disk, %d in the model", p, info.Size(), n.size))
			}
			return nil
		})
	}
	for p := range m.nodes {
		if !seen[p] {
			out = append(out, p+" is in the model but not on disk")
		}
	}
	slices.Sort(out)
	return out
}

type cutOp int

const (
	cutTruncate cutOp = iota
	cutRemove
	cutRestore
	cutKeep
)

// cutAction is one step of a power cut.
type cutAction struct {
	op   cutOp
	path string
	to   string // cutRestore: the durable name
	size int64  // cutTruncate: the synced size
	from int64  // cutTruncate: the size before
	why  string // cutKeep
}

func (a cutAction) apply() error {
	switch a.op {
	case cutTruncate:
		return os.Truncate(a.path, a.size)
	case cutRemove:
		return os.RemoveAll(a.path)
	case cutRestore:
		return os.Rename(a.path, a.to)
	}
	return nil
}

func (a cutAction) String() string {
	switch a.op {
	case cutTruncate:
		return fmt.Sprintf("truncate %s %d -> %d", a.path, a.from, a.size)
	case cutRemove:
		return "remove " + a.path
	case cutRestore:
		return "restore " + a.path + " -> " + a.to
	}
	return "keep " + a.path
}

// plan returns the steps that take the directories to what survives the
// cut: removals (parents before children), then renames back and what goes
// from the directories renamed back, then truncations.
func (m *fsModel) plan() []cutAction {
	var removes, restores, truncs []cutAction
	var gone []string // paths removed or moved away, with all below them
	isGone := func(p string) bool {
		return slices.ContainsFunc(gone, func(g string) bool { return p == g || strings.HasPrefix(p, g+"/") })
	}
	var back []string // lost names of nodes that came from a durable one
	for _, p := range slices.Sorted(maps.Keys(m.nodes)) {
		if m.isRoot(p) || isGone(p) {
			continue
		}
		n := m.nodes[p]
		switch {
		case n.named:
		case n.replaced:
			restores = append(restores, cutAction{op: cutKeep, path: p, why: "renamed over a file with a durable name, which is gone"})
		default:
			gone = append(gone, p)
			if n.origin != "" {
				back = append(back, p)
			} else {
				removes = append(removes, cutAction{op: cutRemove, path: p})
			}
			continue
		}
		if !n.dir && n.size > n.synced {
			truncs = append(truncs, cutAction{op: cutTruncate, path: p, size: n.synced, from: n.size})
		}
	}
	for _, p := range back {
		n := m.nodes[p]
		if (m.nodes[n.origin] != nil && !isGone(n.origin)) || !m.durable(filepath.Dir(n.origin)) || isGone(filepath.Dir(n.origin)) {
			removes = append(removes, cutAction{op: cutRemove, path: p})
			continue
		}
		restores = append(restores, cutAction{op: cutRestore, path: p, to: n.origin})
		if !n.dir && n.size > n.synced {
			truncs = append(truncs, cutAction{op: cutTruncate, path: n.origin, size: n.synced, from: n.size})
		}
		// What is in a directory renamed back goes with it, and is judged
		// there.
		var lost []string
		for _, q := range slices.Sorted(maps.Keys(m.nodes)) {
			if !strings.HasPrefix(q, p+"/") || slices.ContainsFunc(lost, func(g string) bool { return strings.HasPrefix(q, g+"/") }) {
				continue
			}
			c, at := m.nodes[q], n.origin+strings.TrimPrefix(q, p)
			if !c.named && !c.replaced {
				lost = append(lost, q)
				restores = append(restores, cutAction{op: cutRemove, path: at})
			} else if !c.dir && c.size > c.synced {
				truncs = append(truncs, cutAction{op: cutTruncate, path: at, size: c.synced, from: c.size})
			}
		}
	}
	return slices.Concat(removes, restores, truncs)
}

// durable reports whether directory p survives the cut: every name on its
// path is durable.
func (m *fsModel) durable(p string) bool {
	for ; !m.isRoot(p); p = filepath.Dir(p) {
		n := m.nodes[p]
		if !m.under(p) || n == nil || !(n.named || n.replaced) {
			return false
		}
	}
	return true
}

// privateNATSCluster is a three-node NATS cluster of one test's own,
// started and stopped through deploy/local/nats-cluster.sh under a state
// directory of its own (HERALD_LOCAL_DIR: data, logs, pidfiles, configs and
// secrets) on loopback ports of its own, so that the shared servers and the
// HA cluster's ports 4261-4263 are never touched.
type privateNATSCluster struct {
	// URLs are the nodes' client URLs, comma-separated.
	URLs string

	dir string
	env []string
}

// startPrivateNATSCluster starts a fresh private cluster whose nodes have
// the JetStream sync_interval sync (HERALD_NATS_SYNC: always, default or a
// duration), and stops it at cleanup. It reuses the shared scripts' built
// nats-server and, if HERALD_NATS_PASSWORD_FILE is set, Herald's password in
// it (copied), so that a cluster's instances, which log in with that file,
// can use the private one.
func startPrivateNATSCluster(t *testing.T, sync string) *privateNATSCluster {
	t.Helper()
	binDir := os.Getenv("HERALD_BIN_DIR")
	if binDir == "" {
		base := os.Getenv("HERALD_LOCAL_DIR")
		if base == "" {
			base = filepath.Join(repoRoot, ".local")
		}
		binDir = filepath.Join(base, "bin")
	}
	c := &privateNATSCluster{dir: t.TempDir()}
	secrets := filepath.Join(c.dir, "secrets")
	if f := os.Getenv("HERALD_NATS_PASSWORD_FILE"); f != "" {
		pw, err := os.ReadFile(f)
		if err == nil {
			err = os.Mkdir(secrets, 0o700)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(secrets, "nats-password"), pw, 0o600)
		}
		if err != nil {
			t.Fatalf("HERALD_NATS_PASSWORD_FILE: %v", err)
		}
	}
	portBase := freePortBase(t, 1, 2, 3, 2001, 2002, 2003, 4001, 4002, 4003) // nats-cluster.sh's layout
	c.env = []string{
		"HERALD_LOCAL_DIR=" + c.dir,
		"HERALD_BIN_DIR=" + binDir,
		"HERALD_SECRETS_DIR=" + secrets,
		"HERALD_NATS_HA_PORT_BASE=" + strconv.Itoa(portBase),
		"HERALD_NATS_SYNC=" + sync,
		"HERALD_STOP_TIMEOUT=15",
	}
	var urls []string
	for n := 1; n <= 3; n++ {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", portBase+n))
	}
	c.URLs = strings.Join(urls, ",")
	t.Cleanup(func() {
		if t.Failed() {
			for n := 1; n <= 3; n++ {
				t.Logf("%s", c.logTail(n, 20))
			}
		}
		c.Stop(t)
	})
	c.Start(t)
	return c
}

// freePortBase returns a port base b such that every b+offset is a free
// loopback port, below the ephemeral range so that no client takes one.
func freePortBase(t testing.TB, offsets ...int) int {
	t.Helper()
	reservedMu.Lock()
	defer reservedMu.Unlock()
	for range 100 {
		base := 20000 + rand.IntN(8000)
		free := true
		for _, off := range offsets {
			// A port another test of this process took is not free, even
			// if its server has not bound it yet: two private clusters
			// started at once must not share a port.
			if reservedPorts[base+off] {
				free = false
				break
			}
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+off))
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		if free {
			for _, off := range offsets {
				reservedPorts[base+off] = true
			}
			return base
		}
	}
	t.Fatalf("no free port base for offsets %v", offsets)
	return 0
}

// reservedPorts are the ports freePortBase has handed out in this process.
var (
	reservedMu    sync.Mutex
	reservedPorts = map[int]bool{}
)

// Start starts every node that is not running through nats-cluster.sh and
// waits until each serves JetStream and knows the meta leader.
func (c *privateNATSCluster) Start(t testing.TB) {
	t.Helper()
	runScriptEnv(t, c.env, "nats-cluster.sh", "start")
}

// Stop stops the nodes: SIGTERM, then SIGKILL after HERALD_STOP_TIMEOUT.
func (c *privateNATSCluster) Stop(t testing.TB) {
	t.Helper()
	runScriptEnv(t, c.env, "nats-cluster.sh", "stop")
}

// PIDs returns the running nodes' pids, from their pidfiles.
func (c *privateNATSCluster) PIDs(t testing.TB) []int {
	t.Helper()
	var pids []int
	for n := 1; n <= 3; n++ {
		path := filepath.Join(c.dir, "run", fmt.Sprintf("nats-ha-%d.pid", n))
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		pids = append(pids, pid)
	}
	return pids
}

// StoreDirs returns the nodes' data directories (their JetStream store_dir).
func (c *privateNATSCluster) StoreDirs() []string {
	var dirs []string
	for n := 1; n <= 3; n++ {
		dirs = append(dirs, filepath.Join(c.dir, "data", fmt.Sprintf("nats-ha-%d", n)))
	}
	return dirs
}

// Connect returns a client of the cluster, logged in as Herald's user,
// closed at cleanup.
func (c *privateNATSCluster) Connect(t testing.TB) *nats.Conn {
	t.Helper()
	pw, err := os.ReadFile(filepath.Join(c.dir, "secrets", "nats-password"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(c.URLs, nats.UserInfo("herald", strings.TrimSpace(string(pw))), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatalf("connect to %s: %v", c.URLs, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func (c *privateNATSCluster) logTail(n, lines int) string {
	path := filepath.Join(c.dir, "logs", fmt.Sprintf("nats-ha-%d.log", n))
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	all = all[max(0, len(all)-lines):]
	return fmt.Sprintf("----- last %d lines of %s -----\n%s\n-----", len(all), path, strings.Join(all, "\n"))
}

// TestPowerLossModel replays small traces into the power-cut model and
// checks the plan: what is truncated, removed, restored and kept.
func TestPowerLossModel(t *testing.T) {
	baseline := func() *fsModel {
		m := newFSModel([]string{"/r"})
		m.nodes["/r"] = &fsNode{dir: true, named: true}
		m.nodes["/r/msgs"] = &fsNode{dir: true, named: true}
		m.nodes["/r/msgs/1.blk"] = &fsNode{size: 10, synced: 10, named: true}
		m.nodes["/r/meta.inf"] = &fsNode{size: 4, synced: 4, named: true}
		m.fds[fdKey{5, "/r/msgs/1.blk"}] = &fdState{off: 10}
		return m
	}
	tests := []struct {
		name    string
		trace   string
		want    []string // the plan, in cutAction.String form
		strict  []string // the plan under the strict model, if it differs
		problem string   // a problem the replay must report
	}{{
		name: "an fsync covers the writes that returned before it began",
		trace: `100 pwrite64(5</r/msgs/1.blk>, ""..., 20, 10) = 20
100 fsync(5</r/msgs/1.blk> <unfinished ...>
101 pwrite64(5</r/msgs/1.blk>, ""..., 5, 30) = 5
100 <... fsync resumed>) = 0
100 pwrite64(5</r/msgs/1.blk>, ""..., 7, 35) = 7`,
		want: []string{"truncate /r/msgs/1.blk 42 -> 30"},
	}, {
		name: "a failed or unfinished fsync syncs nothing",
		trace: `100 pwrite64(5</r/msgs/1.blk>, ""..., 20, 10) = 20
100 fsync(5</r/msgs/1.blk>) = -1 EIO (Input/output error)
101 fsync(5</r/msgs/1.blk> <unfinished ...>
101 +++ killed by SIGKILL +++`,
		want: []string{"truncate /r/msgs/1.blk 30 -> 10"},
	}, {
		name: "a new file never synced goes; one fsynced stays, by its name only under the journaled model",
		trace: `100 openat(AT_FDCWD</x>, "/r/msgs/2.blk", O_RDWR|O_CREAT|O_CLOEXEC, 0600) = 6</r/msgs/2.blk>
100 pwrite64(6</r/msgs/2.blk>, ""..., 8, 0) = 8
100 fsync(6</r/msgs/2.blk>) = 0
100 openat(AT_FDCWD</x>, "/r/msgs/3.blk", O_RDWR|O_CREAT|O_CLOEXEC, 0600) = 7</r/msgs/3.blk>
100 write(7</r/msgs/3.blk>, ""..., 8) = 8`,
		want:   []string{"remove /r/msgs/3.blk"},
		strict: []string{"remove /r/msgs/2.blk", "remove /r/msgs/3.blk"},
	}, {
		name: "a directory's fsync makes the names in it durable, not their data",
		trace: `100 mkdirat(AT_FDCWD</x>, "/r/new", 0700) = 0
100 openat(AT_FDCWD</x>, "/r/new/a", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0600) = 6</r/new/a>
100 write(6</r/new/a>, ""..., 3) = 3
100 close(6</r/new/a>) = 0
100 openat(AT_FDCWD</x>, "/r/new", O_RDONLY|O_CLOEXEC) = 6</r/new>
100 fsync(6</r/new>) = 0
100 close(6</r/new>) = 0
100 openat(AT_FDCWD</x>, "/r", O_RDONLY|O_CLOEXEC) = 6</r>
100 fsync(6</r>) = 0`,
		want: []string{"truncate /r/new/a 3 -> 0"},
	}, {
		name: "a new directory never synced goes with what is in it",
		trace: `100 mkdirat(AT_FDCWD</x>, "/r/new", 0700) = 0
100 openat(AT_FDCWD</x>, "/r/new/a", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0600) = 6</r/new/a>
100 write(6</r/new/a>, ""..., 3) = 3`,
		want: []string{"remove /r/new"},
	}, {
		name: "O_SYNC writes are synced; a rename over a durable file without the directory's fsync is kept",
		trace: `100 openat(AT_FDCWD</x>, "/r/meta.inf.tmp", O_WRONLY|O_CREAT|O_TRUNC|O_SYNC|O_CLOEXEC, 0600) = 6</r/meta.inf.tmp>
100 write(6</r/meta.inf.tmp>, ""..., 9) = 9
100 close(6</r/meta.inf.tmp>) = 0
100 renameat(AT_FDCWD</x>, "/r/meta.inf.tmp", AT_FDCWD</x>, "/r/meta.inf") = 0`,
		want: []string{"keep /r/meta.inf"},
	}, {
		name: "a rename from a durable name goes back to it unless the directory is synced",
		trace: `100 renameat(AT_FDCWD</x>, "/r/msgs/1.blk", AT_FDCWD</x>, "/r/msgs/9.blk") = 0
100 openat(AT_FDCWD</x>, "/r/msgs", O_RDONLY|O_CLOEXEC) = 6</r/msgs>
100 fsync(6</r/msgs> <unfinished ...>
101 renameat(AT_FDCWD</x>, "/r/meta.inf", AT_FDCWD</x>, "/r/meta.old") = 0
100 <... fsync resumed>) = 0
101 pwrite64(5</r/msgs/9.blk>, ""..., 2, 10) = 2`,
		want: []string{"restore /r/meta.old -> /r/meta.inf", "truncate /r/msgs/9.blk 12 -> 10"},
	}, {
		name: "a rename goes back to its durable name after the new file there is removed",
		trace: `100 renameat(AT_FDCWD</x>, "/r/msgs", AT_FDCWD</x>, "/r/__msgs__") = 0
100 mkdirat(AT_FDCWD</x>, "/r/msgs", 0700) = 0
100 pwrite64(5</r/__msgs__/1.blk>, ""..., 2, 10) = 2`,
		want: []string{"remove /r/msgs", "restore /r/__msgs__ -> /r/msgs", "truncate /r/msgs/1.blk 12 -> 10"},
	}, {
		name: "O_APPEND and lseek move the offset of write",
		trace: `100 openat(AT_FDCWD</x>, "/r/log", O_WRONLY|O_CREAT|O_APPEND|O_CLOEXEC, 0600) = 6</r/log>
100 write(6</r/log>, ""..., 5) = 5
100 write(6</r/log>, ""..., 5) = 5
100 fsync(6</r/log>) = 0
100 lseek(5</r/msgs/1.blk>, 2, SEEK_SET) = 2
100 write(5</r/msgs/1.blk>, ""..., 4) = 4
100 ftruncate(5</r/msgs/1.blk>, 8) = 0`,
		want:   nil,
		strict: []string{"remove /r/log"},
	}, {
		name:    "a write through a descriptor the model never saw opened is a problem",
		trace:   `100 write(9</r/msgs/1.blk>, ""..., 5) = 5`,
		problem: "did not see opened",
	}, {
		name:    "calls the model does not follow are problems",
		trace:   `100 fallocate(5</r/msgs/1.blk>, 0, 0, 4096) = 0`,
		problem: "not modelled",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, strict := range []bool{false, true} {
				m := baseline().clone(strict)
				for l := range strings.SplitSeq(tc.trace, "\n") {
					m.line(l)
				}
				m.finish()
				if tc.problem != "" {
					if !slices.ContainsFunc(m.problems, func(p string) bool { return strings.Contains(p, tc.problem) }) {
						t.Errorf("strict=%v: problems %q; want one with %q", strict, m.problems, tc.problem)
					}
					continue
				}
				if len(m.problems) > 0 {
					t.Errorf("strict=%v: problems %q", strict, m.problems)
				}
				want := tc.want
				if strict && tc.strict != nil {
					want = tc.strict
				}
				var got []string
				for _, a := range m.plan() {
					got = append(got, a.String())
				}
				if !slices.Equal(got, want) {
					t.Errorf("strict=%v: plan %q; want %q", strict, got, want)
				}
			}
		})
	}
}

// TestPowerLossModelCutShortWrite checks a write the kill cut short: the
// file on disk holds part of it, which the cut throws away.
func TestPowerLossModelCutShortWrite(t *testing.T) {
	root := t.TempDir()
	blk := filepath.Join(root, "1.blk")
	if err := os.WriteFile(blk, make([]byte, 10), 0o600); err != nil {
		t.Fatal(err)
	}
	base, err := takeBaseline([]string{root}, nil)
	if err != nil {
		t.Fatal(err)
	}
	base.fds[fdKey{5, blk}] = &fdState{off: 10}
	m := base.clone(false)
	m.line(fmt.Sprintf(`100 pwrite64(5<%s>, ""..., 20, 10 <unfinished ...>`, blk))
	m.line(`100 +++ killed by SIGKILL +++`)
	m.finish()
	if err := os.WriteFile(blk, make([]byte, 17), 0o600); err != nil { // 7 of the 20 bytes reached the file
		t.Fatal(err)
	}
	if problems := m.checkDisk(); len(problems) > 0 {
		t.Errorf("checkDisk: %q; want none", problems)
	}
	var got []string
	for _, a := range m.plan() {
		got = append(got, a.String())
	}
	if want := []string{"truncate " + blk + " 17 -> 10"}; !slices.Equal(got, want) {
		t.Errorf("plan %q; want %q", got, want)
	}
}

// TestPowerLossMechanism proves the power cut on a private three-node
// cluster and an R3 stream: with the server's default sync (an fsync every
// 2 minutes) a cut of all three nodes loses acknowledged messages, which
// shows that the mechanism throws away what was not synced; with
// sync_interval always it loses none. The first case is the control's
// control: the same nodes SIGKILLed without the cut lose nothing, so what
// the cut loses is what only the page cache held.
func TestPowerLossMechanism(t *testing.T) {
	if _, err := exec.LookPath("strace"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("strace: %v", err)
		}
		t.Skipf("strace: %v", err)
	}
	for _, tc := range []struct {
		sync     string
		powerCut bool // or only SIGKILL
		wantLoss bool
	}{{"default", false, false}, {"default", true, true}, {"always", true, false}} {
		name := "sync=" + tc.sync + "/kill"
		if tc.powerCut {
			name = "sync=" + tc.sync + "/power-cut"
		}
		t.Run(name, func(t *testing.T) {
			// Each case has a cluster of its own, and most of its time is
			// the nodes' meta-leader elections: the cases wait together.
			t.Parallel()
			acked, present := powerCutRun(t, tc.sync, tc.powerCut)
			var missing []uint64
			for seq, payload := range acked {
				if !present[payload] {
					missing = append(missing, seq)
				}
			}
			slices.Sort(missing)
			t.Logf("%s: %d messages acked, %d of them missing afterwards", name, len(acked), len(missing))
			switch {
			case tc.wantLoss && len(missing) == 0:
				t.Errorf("%s: no acked message lost; the cut should lose what was not synced", name)
			case !tc.wantLoss && len(missing) > 0:
				t.Errorf("%s: %d acked messages lost, sequences %v", name, len(missing), missing[:min(len(missing), 20)])
			}
		})
	}
}

// powerCutMessages is how many messages each run publishes.
const powerCutMessages = 1000

// powerCutRun publishes to an R3 stream on a private cluster with the given
// sync, cuts the power of all three nodes (or, unless powerCut, SIGKILLs
// them), starts them again, and returns the acked messages (payload by
// stream sequence) and the payloads the stream then holds.
func powerCutRun(t *testing.T, sync string, powerCut bool) (acked map[uint64]string, present map[string]bool) {
	c := startPrivateNATSCluster(t, sync)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	js, err := jetstream.New(c.Connect(t), jetstream.WithPublishAsyncMaxPending(256))
	if err != nil {
		t.Fatal(err)
	}
	const stream = "POWERCUT"
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{"powercut.>"}, Replicas: 3, Storage: jetstream.FileStorage}); err != nil {
		t.Fatalf("create stream %s: %v", stream, err)
	}
	// The stream exists on all three before tracing, so that the cut is about
	// the messages.
	waitfor.Until(t, waitfor.Deadline, "stream "+stream+" to have a leader and two current replicas", func() (bool, any) {
		return streamReady(ctx, js, stream)
	})

	tr := startSyncTracker(t, c.PIDs(t), c.StoreDirs())
	acked = map[uint64]string{}
	start := time.Now()
	futures := make([]jetstream.PubAckFuture, 0, powerCutMessages)
	for i := range powerCutMessages {
		// strace slows the servers: wait for room among the pending acks
		// longer than the default 200 ms.
		f, err := js.PublishAsync(fmt.Sprintf("powercut.%d", i%10), fmt.Appendf(nil, "message %d", i), jetstream.WithStallWait(time.Minute))
		if err != nil {
			t.Fatalf("publish message %d: %v", i, err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			acked[ack.Sequence] = string(f.Msg().Data)
		case err := <-f.Err():
			t.Fatalf("message %d: no ack: %v", i, err)
		case <-ctx.Done():
			t.Fatalf("message %d: no ack: %v", i, ctx.Err())
		}
	}
	elapsed := time.Since(start)
	t.Logf("%d messages acked in %v under strace: %.0f messages/s (sync %s)", len(acked), elapsed.Round(time.Millisecond), float64(len(acked))/elapsed.Seconds(), sync)

	cutStart := time.Now()
	end := tr.Crash
	if powerCut {
		end = tr.PowerCut
	}
	rep := end(t)
	t.Logf("%v (in %v)", rep, time.Since(cutStart).Round(time.Millisecond))

	c.Start(t)
	js2, err := jetstream.New(c.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	present = map[string]bool{}
	// A leader is enough to read what survived; after a cut that lost
	// data, the replicas may not catch up with it.
	var s jetstream.Stream
	var info *jetstream.StreamInfo
	waitfor.Until(t, waitfor.Deadline, "stream "+stream+" to come back with a leader", func() (bool, any) {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var err error
		if s, err = js2.Stream(ctx, stream); err != nil {
			return false, err
		}
		info = s.CachedInfo()
		return info.Cluster != nil && info.Cluster.Leader != "", info.Cluster
	})
	t.Logf("after the restart: stream %s holds %d messages, sequences %d-%d", stream, info.State.Msgs, info.State.FirstSeq, info.State.LastSeq)
	if info.State.Msgs > 0 {
		// Just after the restart a request may find no leader yet: read it
		// all again until one read gets everything.
		waitfor.Until(t, waitfor.Deadline, fmt.Sprintf("a read of all %d messages of stream %s", info.State.Msgs, stream), func() (bool, any) {
			got, err := readStream(ctx, s, info.State.Msgs)
			if err != nil {
				return false, err
			}
			present = got
			return true, nil
		})
	}
	return acked, present
}

// readStream reads n messages of s with an ordered consumer and returns
// their payloads.
func readStream(ctx context.Context, s jetstream.Stream, n uint64) (map[string]bool, error) {
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	got := map[string]bool{}
	for read := uint64(0); read < n; {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, err
		}
		before := read
		for msg := range batch.Messages() {
			got[string(msg.Data())] = true
			read++
		}
		if batch.Error() != nil || read == before {
			return nil, fmt.Errorf("%d of %d messages, then none (%v)", read, n, batch.Error())
		}
	}
	return got, nil
}

// streamReady reports whether stream has a leader and two replicas that are
// current.
func streamReady(ctx context.Context, js jetstream.JetStream, stream string) (bool, any) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return false, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return false, err
	}
	cl := info.Cluster
	if cl == nil || cl.Leader == "" {
		return false, cl
	}
	if len(cl.Replicas) != 2 {
		return false, fmt.Sprintf("%d replicas", len(cl.Replicas))
	}
	for _, r := range cl.Replicas {
		if !r.Current {
			return false, fmt.Sprintf("replica %s not current", r.Name)
		}
	}
	return true, nil
}
