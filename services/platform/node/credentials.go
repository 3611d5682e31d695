package node

import (
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/herald-feed/herald/services/platform/flagenv"
)

// Login is how a Herald process logs in to one of the servers it runs on
// (etcd, NATS, Redis, Cassandra): a user, and the file that holds its
// password. A password is only ever taken from a file: a command line is
// visible to every user of the machine (ps), and an environment variable
// is inherited by every child and copied into crash reports. The zero
// Login connects without credentials.
type Login struct {
	User         string
	PasswordFile string
}

// BindLogin defines the two flags of a Login on fs: -<name>-user and
// -<name>-password-file, with their variables HERALD_<NAME>_USER and
// HERALD_<NAME>_PASSWORD_FILE. name is the server's flag prefix ("etcd",
// "nats", "redis", "cassandra"), server its name in the help text.
func BindLogin(fs *flagenv.Set, l *Login, name, server string) {
	user, file := loginFlags(name)
	fs.String(&l.User, user, loginVar(name, "USER"), l.User, "user to log in to "+server+" as, with the password in -"+file+"; empty: no login")
	fs.String(&l.PasswordFile, file, loginVar(name, "PASSWORD_FILE"), l.PasswordFile, "file holding the password of -"+user+" (a trailing newline is ignored)")
}

// Read returns the user and the password in the password file, without
// its trailing newline; the zero Login returns two empty strings. name is
// the flag prefix given to BindLogin, for errors that name the flags: a
// user without a password file or the other way round, a file that does
// not read, or an empty one.
func (l Login) Read(name string) (user, password string, err error) {
	if l == (Login{}) {
		return "", "", nil
	}
	userFlag, fileFlag := loginFlags(name)
	userFlag = "-" + userFlag + " (" + loginVar(name, "USER") + ")"
	fileFlag = "-" + fileFlag + " (" + loginVar(name, "PASSWORD_FILE") + ")"
	switch {
	case l.PasswordFile == "":
		return "", "", fmt.Errorf("%s %q needs %s, the file holding its password", userFlag, l.User, fileFlag)
	case l.User == "":
		return "", "", fmt.Errorf("%s %s needs %s, the user whose password it holds", fileFlag, l.PasswordFile, userFlag)
	}
	b, err := os.ReadFile(l.PasswordFile)
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", fileFlag, err)
	}
	password = strings.TrimRight(string(b), "\r\n")
	if password == "" {
		return "", "", fmt.Errorf("%s %s: the file is empty", fileFlag, l.PasswordFile)
	}
	return l.User, password, nil
}

func loginFlags(name string) (user, file string) { return name + "-user", name + "-password-file" }

func loginVar(name, suffix string) string { return "HERALD_" + strings.ToUpper(name) + "_" + suffix }

// bindCredentials defines the etcd and NATS logins' flags, which a process
// on embedded servers (the all-in-one) does not take.
func bindCredentials(fs *flagenv.Set, c *Config) {
	BindLogin(fs, &c.EtcdLogin, "etcd", "etcd")
	BindLogin(fs, &c.NATSLogin, "nats", "NATS")
}

// logins are a node's logins to etcd, NATS and Kafka, read from their
// files.
type logins struct {
	etcdUser, etcdPassword   string
	kafkaUser, kafkaPassword string
	// nats holds the NATS connect options of the login; none without one.
	nats []nats.Option
}

// readLogins reads the password files of c's logins, at start, so that
// an unreadable one is a start-up error naming its flag and path.
func (c *Config) readLogins() (logins, error) {
	var cr logins
	var err error
	if cr.etcdUser, cr.etcdPassword, err = c.EtcdLogin.Read("etcd"); err != nil {
		return cr, err
	}
	if cr.kafkaUser, cr.kafkaPassword, err = c.Kafka.Login.Read("kafka"); err != nil {
		return cr, err
	}
	user, password, err := c.NATSLogin.Read("nats")
	if err != nil {
		return cr, err
	}
	if user != "" {
		cr.nats = []nats.Option{nats.UserInfo(user, password)}
	}
	return cr, nil
}
