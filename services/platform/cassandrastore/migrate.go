package cassandrastore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gocql/gocql"
)

// The schema, one file per version: NNNN_name.cql, applied in order of NNNN.
// A file holds CQL statements ended by ";", with {keyspace} for the
// keyspace, and "--" comment lines. Every statement must be safe to run
// twice (IF NOT EXISTS), because a migration cut short runs again in full.
//
//go:embed migrations/*.cql
var migrationFiles embed.FS

type migration struct {
	version int
	name    string
	stmts   []string
}

// Migrate creates keyspace, with the replication map given (a CQL map
// literal), if it does not exist, then applies the migrations it has not yet
// applied, in order, and records each in keyspace.schema_migrations.
// Running it again is a no-op. session need not be bound to keyspace.
//
// Two processes migrating the same fresh keyspace at once both run the same
// IF NOT EXISTS statements; on a multi-node cluster, migrate from one
// process (start one instance first) so that concurrent schema changes do
// not race between coordinators.
func Migrate(ctx context.Context, session *gocql.Session, keyspace, replication string) error {
	if err := checkKeyspace(keyspace); err != nil {
		return err
	}
	if err := checkReplication(replication); err != nil {
		return err
	}
	migrations, err := loadMigrations()
	if err != nil {
		return err
	}
	exec := func(stmt string, args ...any) error {
		return session.Query(stmt, args...).WithContext(ctx).Exec()
	}

	if err := exec(fmt.Sprintf("CREATE KEYSPACE IF NOT EXISTS %s WITH replication = %s", keyspace, replication)); err != nil {
		return fail("migrate: create keyspace "+keyspace, err)
	}
	if err := exec(fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.schema_migrations (version int PRIMARY KEY, applied_at timestamp)", keyspace)); err != nil {
		return fail("migrate: create schema_migrations", err)
	}
	applied := map[int]bool{}
	iter := session.Query(fmt.Sprintf("SELECT version FROM %s.schema_migrations", keyspace)).WithContext(ctx).Iter()
	var v int
	for iter.Scan(&v) {
		applied[v] = true
	}
	if err := iter.Close(); err != nil {
		return fail("migrate: read schema_migrations", err)
	}

	for _, m := range migrations {
		if applied[m.version] {
			continue
		}
		for _, stmt := range m.stmts {
			if err := exec(strings.ReplaceAll(stmt, "{keyspace}", keyspace)); err != nil {
				return fail(fmt.Sprintf("migrate: %s", m.name), err)
			}
		}
		err := exec(fmt.Sprintf("INSERT INTO %s.schema_migrations (version, applied_at) VALUES (?, ?)", keyspace), m.version, time.Now())
		if err != nil {
			return fail(fmt.Sprintf("migrate: record %s", m.name), err)
		}
	}
	return nil
}

// checkReplication catches a replication setting that is not a CQL map
// before it is pasted into CREATE KEYSPACE.
func checkReplication(r string) error {
	r = strings.TrimSpace(r)
	if !strings.HasPrefix(r, "{") || !strings.HasSuffix(r, "}") || strings.Contains(r, ";") {
		return fmt.Errorf("cassandra: replication %q: want a CQL map such as %s", r, DefaultReplication)
	}
	return nil
}

// loadMigrations parses the embedded migration files, in version order.
func loadMigrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.cql")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, name := range names {
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		version, err := strconv.Atoi(num)
		if !ok || err != nil || version <= 0 {
			return nil, fmt.Errorf("cassandra: migration %s: name must be NNNN_name.cql", base)
		}
		b, err := migrationFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		m := migration{version: version, name: base, stmts: splitCQL(string(b))}
		if len(m.stmts) == 0 {
			return nil, fmt.Errorf("cassandra: migration %s has no statements", base)
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("cassandra: migrations %s and %s share a version", out[i-1].name, out[i].name)
		}
	}
	return out, nil
}

// splitCQL splits a migration file into statements: comment lines are
// dropped, and a statement ends with a ";" at the end of a line.
func splitCQL(src string) []string {
	var stmts []string
	var cur strings.Builder
	for line := range strings.Lines(src) {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		if strings.HasSuffix(t, ";") {
			stmts = append(stmts, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		stmts = append(stmts, s)
	}
	return stmts
}
