// Command cassandraroles sets up the logins of the local Cassandra that
// deploy/local/cassandra.sh runs with PasswordAuthenticator and
// CassandraAuthorizer: a superuser of its own (herald_admin by default), the
// role Herald logs in as (herald), and the default superuser cassandra
// turned off. Each password is read from a file, so that none is on a
// command line.
//
//	cassandraroles -hosts 127.0.0.1:9043 -password-file F -admin-password-file A
//
// Every step can run again, and the command runs at every start of the
// script: on a fresh data dir it logs in as cassandra/cassandra (the role
// Cassandra creates when it finds none), on one set up before it logs in
// as the admin, and on one whose data predates authentication it grants
// Herald's role the keyspaces already there. When Herald's role already
// logs in and cassandra does not, it changes nothing.
//
// Herald's role may create and drop keyspaces, and has every permission
// on those it creates (Cassandra grants them to the creator) and on those
// there were at set-up; it is not a superuser, and has no permission on
// the system keyspaces beyond what every role has. DROP is granted on all
// keyspaces because the tests drop theirs with DROP KEYSPACE IF EXISTS,
// which Cassandra checks against all keyspaces once the keyspace, and so
// its creator's permissions, is gone.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gocql/gocql"
)

// The default superuser that Cassandra creates when it finds no roles.
const defaultSuperuser = "cassandra"

// allKeyspaces are the permissions Herald's role has on ALL KEYSPACES.
var allKeyspaces = []string{"CREATE", "DROP"}

func main() {
	var c config
	flag.StringVar(&c.hosts, "hosts", "", "comma-separated Cassandra hosts, host:port (required)")
	flag.StringVar(&c.user, "user", "herald", "the role Herald logs in as")
	flag.StringVar(&c.passwordFile, "password-file", "", "file holding the password of -user (required)")
	flag.StringVar(&c.admin, "admin", "herald_admin", "the superuser that replaces cassandra")
	flag.StringVar(&c.adminPasswordFile, "admin-password-file", "", "file holding the password of -admin (required)")
	flag.DurationVar(&c.wait, "wait", time.Minute, "how long to keep trying to log in as the admin or as cassandra, which Cassandra creates shortly after start")
	flag.Parse()
	if err := c.run(); err != nil {
		fmt.Fprintln(os.Stderr, "cassandraroles:", err)
		os.Exit(1)
	}
}

type config struct {
	hosts, user, passwordFile, admin, adminPasswordFile string
	wait                                                time.Duration

	password, adminPassword string
}

func (c *config) run() error {
	if c.hosts == "" || c.passwordFile == "" || c.adminPasswordFile == "" {
		return errors.New("-hosts, -password-file and -admin-password-file are required")
	}
	var err error
	if c.password, err = readPassword("-password-file", c.passwordFile); err != nil {
		return err
	}
	if c.adminPassword, err = readPassword("-admin-password-file", c.adminPasswordFile); err != nil {
		return err
	}
	if c.done() {
		return nil
	}
	admin, err := c.adminSession()
	if err != nil {
		return err
	}
	defer admin.Close()
	if err := c.setUp(admin); err != nil {
		return err
	}
	// Logins go through Cassandra's caches of roles and credentials,
	// which the changes above invalidate, but allow a moment.
	deadline := time.Now().Add(10 * time.Second)
	for !c.done() {
		if time.Now().After(deadline) {
			return fmt.Errorf("after the set-up, %s still does not log in, or %s still does", c.user, defaultSuperuser)
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Printf("cassandra roles: %s (superuser), %s (login; %s on all keyspaces); %s cannot log in\n",
		c.admin, c.user, strings.Join(allKeyspaces, " and "), defaultSuperuser)
	return nil
}

// done reports whether Herald's role logs in with its permissions on all
// keyspaces, and the default superuser does not log in: what a finished
// set-up leaves, since setUp turns cassandra off last.
func (c *config) done() bool {
	s, err := c.login(c.user, c.password)
	if err != nil {
		return false
	}
	// A role may list its own permissions.
	iter := s.Query("LIST ALL PERMISSIONS ON ALL KEYSPACES OF " + ident(c.user) + " NORECURSIVE").Iter()
	have := map[string]bool{}
	var perm string
	for iter.Scan(nil, nil, nil, &perm) {
		have[perm] = true
	}
	err = iter.Close()
	s.Close()
	if err != nil {
		return false
	}
	for _, p := range allKeyspaces {
		if !have[p] {
			return false
		}
	}
	if s, err := c.login(defaultSuperuser, defaultSuperuser); err == nil {
		s.Close()
		return false
	}
	return true
}

// adminSession logs in as the admin, or else as the default superuser to
// create the admin. Either may not exist yet right after start, so it
// keeps trying until c.wait has passed.
func (c *config) adminSession() (*gocql.Session, error) {
	deadline := time.Now().Add(c.wait)
	for {
		s, err := c.login(c.admin, c.adminPassword)
		if err == nil {
			return s, nil
		}
		if def, derr := c.login(defaultSuperuser, defaultSuperuser); derr == nil {
			err = c.createAdmin(def)
			def.Close()
			if err != nil {
				return nil, err
			}
			continue
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("neither %s (password in %s) nor the default superuser %s logs in to %s after %v: %w. If its data was set up with other secrets, start it afresh (deploy/local/stop.sh cassandra, then remove its data dir)",
				c.admin, c.adminPasswordFile, defaultSuperuser, c.hosts, c.wait, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// createAdmin creates the admin, or sets its password if it exists (from
// an earlier set-up whose secrets were removed while cassandra could
// still log in). Cassandra refuses a second password change of a role
// within 5 s, so each step changes a password at most once.
func (c *config) createAdmin(s *gocql.Session) error {
	exists, err := roleExists(s, c.admin)
	if err != nil {
		return err
	}
	opts := " WITH SUPERUSER = true AND LOGIN = true AND PASSWORD = " + literal(c.adminPassword)
	if exists {
		return execAll(s, "ALTER ROLE "+ident(c.admin)+opts)
	}
	return execAll(s, "CREATE ROLE "+ident(c.admin)+opts)
}

// setUp creates Herald's role without a login, grants it what it needs,
// then gives it its login (unless it logs in already), and last turns the
// default superuser off.
func (c *config) setUp(s *gocql.Session) error {
	role := ident(c.user)
	exists, err := roleExists(s, c.user)
	if err != nil {
		return err
	}
	var stmts []string
	if !exists {
		stmts = append(stmts, "CREATE ROLE "+role+" WITH LOGIN = false")
	}
	for _, p := range allKeyspaces {
		stmts = append(stmts, "GRANT "+p+" ON ALL KEYSPACES TO "+role)
	}
	// Keyspaces from before authentication (a data dir from before these
	// scripts set it up) belong to no role; Herald's are given to it.
	iter := s.Query("SELECT keyspace_name FROM system_schema.keyspaces").Iter()
	var ks string
	for iter.Scan(&ks) {
		if !strings.HasPrefix(ks, "system") {
			stmts = append(stmts, "GRANT ALL PERMISSIONS ON KEYSPACE "+ident(ks)+" TO "+role)
		}
	}
	if err := iter.Close(); err != nil {
		return fmt.Errorf("list keyspaces: %w", err)
	}
	if err := execAll(s, stmts...); err != nil {
		return err
	}
	if h, err := c.login(c.user, c.password); err == nil {
		h.Close()
	} else if err := execAll(s, "ALTER ROLE "+role+" WITH LOGIN = true AND PASSWORD = "+literal(c.password)); err != nil {
		return err
	}
	return execAll(s, "ALTER ROLE "+defaultSuperuser+" WITH SUPERUSER = false AND LOGIN = false")
}

func roleExists(s *gocql.Session, role string) (bool, error) {
	var name string
	err := s.Query("SELECT role FROM system_auth.roles WHERE role = ?", role).Scan(&name)
	if errors.Is(err, gocql.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up role %s: %w", role, err)
	}
	return true, nil
}

func execAll(s *gocql.Session, stmts ...string) error {
	for _, q := range stmts {
		if err := s.Query(q).Exec(); err != nil {
			// The statement may hold a password: name its start only.
			return fmt.Errorf("%s...: %w", strings.Join(strings.Fields(q)[:3], " "), err)
		}
	}
	return nil
}

// login opens a session as user; an error is a refused login as well as
// an unreachable server.
func (c *config) login(user, password string) (*gocql.Session, error) {
	hosts := strings.Split(c.hosts, ",")
	cluster := gocql.NewCluster(hosts...)
	if _, port, err := net.SplitHostPort(hosts[0]); err == nil {
		cluster.Port, _ = strconv.Atoi(port)
	}
	cluster.ProtoVersion = 4
	cluster.Consistency = gocql.One
	cluster.Timeout = 10 * time.Second
	cluster.ConnectTimeout = 5 * time.Second
	cluster.NumConns = 1
	cluster.Authenticator = gocql.PasswordAuthenticator{Username: user, Password: password}
	cluster.Logger = quiet{}
	return cluster.CreateSession()
}

// readPassword returns the password in file, without its trailing newline.
func readPassword(flagName, file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flagName, err)
	}
	p := strings.TrimRight(string(b), "\r\n")
	if p == "" {
		return "", fmt.Errorf("%s %s: the file is empty", flagName, file)
	}
	return p, nil
}

// ident quotes a CQL identifier.
func ident(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// literal quotes a CQL string literal.
func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// quiet drops the driver's log lines: a refused login is an expected
// answer here, which the caller reports.
type quiet struct{}

func (quiet) Print(...any)          {}
func (quiet) Printf(string, ...any) {}
func (quiet) Println(...any)        {}
