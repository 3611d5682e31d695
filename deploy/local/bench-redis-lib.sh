# Sourced by the scripts that benchmark the local Redis directly
# (bench-ceiling.sh, bench-redis.sh, bench-representations.sh), after
# lib.sh: it starts (or reuses) Redis, takes its address and Herald's login
# from env.sh, and defines the clients they share.

"$LOCAL_SCRIPTS/redis.sh" >/dev/null
eval "$("$LOCAL_SCRIPTS/env.sh")"
port=${HERALD_REDIS_ADDR##*:}

# Herald's login (env.sh). redis-cli takes the password from its environment (REDISCLI_AUTH);
# redis-benchmark only from its command line (-a), where this machine's users can see it
# while a benchmark runs: it is the local test server's.
rcli() { REDISCLI_AUTH=$(<"$HERALD_REDIS_PASSWORD_FILE") redis-cli -h "$HOST" -p "$port" --user "$HERALD_REDIS_USER" "$@"; }
rbench() { redis-benchmark -h "$HOST" -p "$port" --user "$HERALD_REDIS_USER" -a "$(<"$HERALD_REDIS_PASSWORD_FILE")" "$@"; }
# rdel CMD: CMD (del or unlink) the keys read from stdin, 5000 a call.
rdel() {
  REDISCLI_AUTH=$(<"$HERALD_REDIS_PASSWORD_FILE") \
    xargs -r -n 5000 redis-cli -h "$HOST" -p "$port" --user "$HERALD_REDIS_USER" "$1" >/dev/null
}
# cpu: the CPU seconds Redis has used (INFO cpu: used_cpu_user + used_cpu_sys).
cpu() { rcli info cpu | tr -d '\r' | awk -F: '/^used_cpu_(user|sys):/ { s += $2 } END { printf "%.6f", s }'; }
