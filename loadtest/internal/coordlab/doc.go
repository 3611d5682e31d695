// Package coordlab is Herald's coordination lab: the classic ZooKeeper and
// etcd recipes for locks and leader election, and the measurements that
// answer the system-design questions about them with numbers from real
// servers (docs/lab/coordination.md).
//
// The recipes share two small interfaces. A Locker is a mutual-exclusion
// lock whose Lock returns a fencing token; an Elector is one candidate in a
// leader election. Each system has two locks: the queue recipe (ZooKeeper's
// ephemeral-sequential children, etcd's concurrency.Mutex ordered by create
// revision), where each waiter watches only its predecessor, and the naive
// "create the key if absent, else watch it and retry" lock, where every
// waiter watches the one key and so wakes on every release (the herd
// effect). Each counts the watch events its client receives, which is how
// the lab shows the difference.
//
// Run measures lock hand-off latency and watch events per hand-off, the
// failover time after a holder or leader process is killed, write and read
// throughput of a three-node ensemble against a three-member etcd cluster,
// and a fencing drill: a holder paused past its lease writes with a stale
// token, which a resource without a token check accepts and one with the
// check rejects. A Report holds the results and writes them as one table,
// Markdown, JSON and PNG charts.
package coordlab
