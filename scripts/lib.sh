# Shared by scripts/run.sh and scripts/test.sh: where PostgreSQL and RabbitMQ are.

# True if something listens on 127.0.0.1:$1.
reachable() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# True if PostgreSQL and RabbitMQ answer on their standard local ports.
local_services() { reachable 5432 && reachable 5672; }

say() { printf '\033[1m%s\033[0m\n' "$*" >&2; }

# 32 random bytes as 64 hex characters: an ICON_SECRETS_KEY (what `openssl rand -hex 32` makes).
random_key() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }
