//! `stats` and its groups, with memcached's field names and order. One
//! source for both text and binary (the encoder turns each line into a
//! `STAT name value` line or a binary stat packet, and each end or refusal
//! into the protocol's reply). The group comes named by the request's
//! parser (`protocol::StatsGroup`: text and binary match names differently).

use super::env::{crawler_settings, emit, stat, Env};
use super::Shared;
use crate::protocol::{Ctx, Response, StatValue as V, StatsGroup};
use crate::stats::{rusage, Counters};
use crate::store::ShardStats;
use crate::time;
use std::sync::atomic::Ordering::Relaxed;

pub fn stats(group: StatsGroup<'_>, env: &Env<'_>, ctx: &Ctx, out: &mut Vec<u8>) {
    let reply = match group {
        StatsGroup::General => {
            general(env, ctx, out);
            Response::StatsEnd
        }
        StatsGroup::Settings => {
            settings(env, ctx, out);
            Response::StatsEnd
        }
        StatsGroup::Items => {
            items(env, ctx, out);
            Response::StatsEnd
        }
        StatsGroup::Slabs => {
            slabs(env, ctx, out);
            Response::StatsEnd
        }
        // Size histograms are off (`track_sizes no`), as memcached's default.
        StatsGroup::Sizes => {
            stat(ctx, "sizes_status", V::Str("disabled"), out);
            Response::StatsEnd
        }
        // Served by `conns::stats` (it needs the asking connection).
        StatsGroup::Conns => Response::StatsEnd,
        StatsGroup::Reset => {
            super::detail::clear();
            env.shared.stats.reset();
            env.shared.store.reset_stats();
            Response::StatsReset
        }
        // Per-prefix stats (`server::detail`).
        StatsGroup::DetailSwitch(on) => {
            super::detail::set_enabled(on);
            Response::Ok
        }
        StatsGroup::DetailDump => {
            // An admin command: one buffer for the dump is fine here.
            let mut text = Vec::new();
            super::detail::dump(&mut text);
            emit(ctx, Response::StatsDetailDump(&text), out);
            return;
        }
        StatsGroup::DetailUsage => Response::StatsDetailUsage,
        StatsGroup::Replication => {
            crate::replication::stats(env.shared.replication.as_ref(), &mut |n, v| {
                stat(ctx, n, v, out)
            });
            Response::StatsEnd
        }
        // Text-only groups, served by `admin` (the dispatcher sends them there).
        StatsGroup::CacheDump(_) | StatsGroup::Extstore | StatsGroup::Unknown => {
            Response::StatsUnknown
        }
    };
    emit(ctx, reply, out);
}

/// What the general block reads, gathered once per `stats`.
struct Sources<'a> {
    sh: &'a Shared,
    /// Command counters, summed over workers.
    c: Counters,
    /// Item counters, summed over shards.
    items: ShardStats,
    /// CPU time (user, system), microseconds.
    ru: (u64, u64),
    now: u32,
}

/// One line of the general block: its name and where its value comes from.
type Row = (&'static str, fn(&Sources<'_>) -> V<'static>);

/// A command counter (`stats::Counters`), by its name.
macro_rules! counter {
    ($name:ident) => {
        (stringify!($name), |s: &Sources<'_>| V::U64(s.c.$name))
    };
}

/// An item counter (`store::ShardStats`), by its name.
macro_rules! item {
    ($name:ident) => {
        (stringify!($name), |s: &Sources<'_>| V::U64(s.items.$name))
    };
}

/// A connection-buffer counter (`stats::Stats`), by its name.
macro_rules! conns {
    ($name:ident) => {
        (stringify!($name), |s: &Sources<'_>| {
            V::U64(s.sh.stats.$name.load(Relaxed))
        })
    };
}

/// A figure memcached has and corecached does not keep: always 0.
macro_rules! zero {
    ($name:ident) => {
        (stringify!($name), |_: &Sources<'_>| V::U64(0))
    };
}

/// The general `stats` block: every line, in memcached 1.6.18's order, with
/// its one source. Connection buffers (server::conn): output buffers are
/// memcached's response objects, input buffers its read buffers; buffers go
/// back to the allocator, so none is ever free-but-held.
const GENERAL: &[Row] = &[
    ("pid", |_| V::U64(std::process::id() as u64)),
    ("uptime", |_| V::U64(time::uptime() as u64)),
    ("time", |s| V::I64(time::to_unix(s.now))),
    ("version", |_| V::Str(super::VERSION)),
    ("libevent", |_| V::Str("monoio")),
    ("pointer_size", |_| V::U64(64)),
    ("rusage_user", |s| V::Micros(s.ru.0)),
    ("rusage_system", |s| V::Micros(s.ru.1)),
    ("max_connections", |s| V::U64(s.sh.config.conn_limit as u64)),
    conns!(curr_connections),
    conns!(total_connections),
    conns!(rejected_connections),
    ("connection_structures", |s| {
        V::U64(s.sh.stats.curr_connections.load(Relaxed))
    }),
    conns!(response_obj_oom),
    conns!(response_obj_count),
    conns!(response_obj_bytes),
    conns!(read_buf_count),
    conns!(read_buf_bytes),
    zero!(read_buf_bytes_free),
    conns!(read_buf_oom),
    zero!(reserved_fds),
    counter!(cmd_get),
    counter!(cmd_set),
    counter!(cmd_flush),
    counter!(cmd_touch),
    counter!(cmd_meta),
    counter!(get_hits),
    counter!(get_misses),
    item!(get_expired),
    item!(get_flushed),
    counter!(delete_misses),
    counter!(delete_hits),
    counter!(incr_misses),
    counter!(incr_hits),
    counter!(decr_misses),
    counter!(decr_hits),
    counter!(cas_misses),
    counter!(cas_hits),
    counter!(cas_badval),
    counter!(touch_hits),
    counter!(touch_misses),
    counter!(store_too_large),
    counter!(store_no_memory),
    counter!(auth_cmds),
    counter!(auth_errors),
    counter!(bytes_read),
    counter!(bytes_written),
    ("limit_maxbytes", |s| {
        V::U64(s.sh.store.budget().limit() as u64)
    }),
    ("accepting_conns", |_| V::U64(1)),
    zero!(listen_disabled_num),
    zero!(time_in_listen_disabled_us),
    ("threads", |s| V::U64(s.sh.config.threads as u64)),
    counter!(conn_yields),
    item!(hash_power_level),
    ("hash_bytes", |s| V::U64(s.items.index_bytes)),
    item!(hash_is_expanding),
    item!(slab_reassign_rescues),
    zero!(slab_reassign_chunk_rescues),
    item!(slab_reassign_evictions_nomem),
    zero!(slab_reassign_inline_reclaim),
    zero!(slab_reassign_busy_items),
    zero!(slab_reassign_busy_deletes),
    zero!(slab_reassign_running),
    item!(slabs_moved),
    zero!(lru_crawler_running),
    zero!(lru_crawler_starts),
    zero!(lru_maintainer_juggles),
    zero!(malloc_fails),
    zero!(log_worker_dropped),
    ("log_worker_written", |s: &Sources<'_>| {
        V::U64(s.sh.watch.written.load(Relaxed))
    }),
    ("log_watcher_skipped", |s: &Sources<'_>| {
        V::U64(s.sh.watch.skipped.load(Relaxed))
    }),
    ("log_watcher_sent", |s: &Sources<'_>| {
        V::U64(s.sh.watch.sent.load(Relaxed))
    }),
    ("log_watchers", |s: &Sources<'_>| {
        V::U64(s.sh.watch.count() as u64)
    }),
    zero!(unexpected_napi_ids),
    zero!(round_robin_fallback),
    item!(bytes),
    item!(curr_items),
    item!(total_items),
    // Free pages waiting in the shared pool (memcached: pages in its
    // global pool, not assigned to a class).
    ("slab_global_page_pool", |s| {
        V::U64(s.sh.store.budget().pooled_pages() as u64)
    }),
    item!(expired_unfetched),
    item!(evicted_unfetched),
    item!(evicted_active),
    item!(evictions),
    item!(reclaimed),
    zero!(crawler_reclaimed),
    zero!(crawler_items_checked),
    zero!(lrutail_reflocked),
    zero!(moves_to_cold),
    zero!(moves_to_warm),
    zero!(moves_within_lru),
    zero!(direct_reclaims),
    zero!(lru_bumps_dropped),
];

fn general(env: &Env<'_>, ctx: &Ctx, out: &mut Vec<u8>) {
    let src = Sources {
        sh: env.shared,
        c: env.shared.stats.sum(),
        items: env.shared.store.stats(),
        ru: rusage(),
        now: time::now(),
    };
    for (name, value) in GENERAL {
        // Not a memcached line: shown (after rejected_connections) only once
        // a connection's task panicked (server::conn::Isolated), so a
        // healthy server's block stays memcached's.
        if *name == "connection_structures" {
            let panics = src.sh.stats.conn_panics.load(Relaxed);
            if panics > 0 {
                stat(ctx, "conn_panics", V::U64(panics), out);
            }
        }
        // memcached shows idle_kicks (after the auth counters) only with
        // `-o idle_timeout`.
        if *name == "bytes_read" && src.sh.config.ext.idle_timeout > 0 {
            let kicks = src.sh.stats.idle_kicks.load(Relaxed);
            stat(ctx, "idle_kicks", V::U64(kicks), out);
        }
        // memcached's TLS lines (with -Z), before the NAPI counters.
        if *name == "unexpected_napi_ids" {
            if let Some(t) = &src.sh.tls {
                let errors = t.handshake_errors.load(Relaxed);
                stat(ctx, "ssl_handshake_errors", V::U64(errors), out);
                let since = src.now.saturating_sub(t.last_refresh.load(Relaxed));
                stat(
                    ctx,
                    "time_since_server_cert_refresh",
                    V::U64(since as u64),
                    out,
                );
            }
        }
        stat(ctx, name, value(&src), out);
    }
    if let Some(r) = &src.sh.replication {
        replication_lines(r, ctx, out);
    }
}

/// A few lines of `stats replication` at the end of the general block, for
/// tools that read only `stats`: only on a host with `--partner` or
/// `--replication-listen` (without, the block is memcached's, byte for
/// byte). Names are `stats replication`'s with a `replication_` prefix;
/// `replication_state` is the least advanced stream's state (`streaming`
/// only when every stream streams; a host without `--partner` sends
/// nothing: `down`), `replication_lag_records` the sum over the streams.
/// Taken from `Replication::stats` (its names are the contract), so the
/// two blocks never disagree.
fn replication_lines(r: &crate::replication::Replication, ctx: &Ctx, out: &mut Vec<u8>) {
    // Ranks of `streamN:state`, least advanced first.
    const STATES: [&str; 4] = ["down", "connecting", "full_sync", "streaming"];
    let mut mode = "async";
    let mut state = STATES.len() - 1;
    let mut lag_records = 0u64;
    let mut lag_bytes = 0u64;
    let mut sums = [
        ("partial_syncs", 0u64),
        ("full_syncs", 0),
        ("sync_timeouts", 0),
        ("sync_async_now", 0),
        ("conflicts", 0),
        ("inbound_connected", 0),
    ];
    r.stats(&mut |name, v| {
        let n = match v {
            V::U64(n) => n,
            V::Str(s) if name == "mode" => {
                mode = if s == "sync" { "sync" } else { "async" };
                return;
            }
            V::Str(s) if name.ends_with(":state") => {
                let rank = STATES.iter().position(|&x| x == s).unwrap_or(0);
                state = state.min(rank);
                return;
            }
            _ => return,
        };
        if name.ends_with(":lag_records") {
            lag_records += n;
        } else if name.starts_with("stream") && name.ends_with(":lag_bytes") {
            lag_bytes += n;
        } else if let Some(e) = sums.iter_mut().find(|e| e.0 == name) {
            e.1 = n;
        }
    });
    stat(ctx, "replication_mode", V::Str(mode), out);
    stat(ctx, "replication_state", V::Str(STATES[state]), out);
    stat(ctx, "replication_lag_records", V::U64(lag_records), out);
    stat(ctx, "replication_lag_bytes", V::U64(lag_bytes), out);
    for (name, n) in sums {
        let line = format!("replication_{name}");
        stat(ctx, &line, V::U64(n), out);
    }
}

fn settings(env: &Env<'_>, ctx: &Ctx, out: &mut Vec<u8>) {
    let cfg = &env.shared.config;
    let inter = cfg
        .listen
        .first()
        .map(|a| a.to_string())
        .unwrap_or_else(|| "NULL".into());
    let maxbytes = env.shared.store.budget().limit() as u64; // cache_memlimit
    let mut s = |name, v| stat(ctx, name, v, out);
    s("maxbytes", V::U64(maxbytes));
    s("maxconns", V::U64(cfg.conn_limit as u64));
    s("tcpport", V::U64(cfg.port as u64));
    s("udpport", V::U64(0));
    s("inter", V::Str(&inter));
    s(
        "verbosity",
        V::U64(env.shared.verbosity.load(Relaxed) as u64),
    );
    s("oldest", V::U64(0));
    s("evictions", V::Str(if cfg.no_evict { "off" } else { "on" }));
    let sock = cfg
        .unix_socket
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "NULL".into());
    s("domain_socket", V::Str(&sock));
    let umask = format!("{:o}", cfg.unix_mask);
    s("umask", V::Str(&umask));
    s("shutdown_command", V::Bool(cfg.enable_shutdown));
    s("growth_factor", V::F64(cfg.growth_factor));
    s("chunk_size", V::U64(cfg.chunk_size as u64));
    s("num_threads", V::U64(cfg.threads as u64));
    s("num_threads_per_udp", V::U64(cfg.threads as u64));
    let delim = [super::detail::delimiter()];
    s(
        "stat_key_prefix",
        V::Str(std::str::from_utf8(&delim).unwrap_or("?")),
    );
    s("detail_enabled", V::Bool(super::detail::enabled()));
    s("reqs_per_event", V::U64(cfg.reqs_per_event as u64));
    s("cas_enabled", V::Bool(cfg.use_cas));
    s("tcp_backlog", V::U64(cfg.backlog as u64));
    // memcached binds to the binary protocol when SASL is on.
    let proto = match cfg.protocol {
        _ if cfg.sasl => "binary",
        crate::config::Protocol::Binary => "binary",
        crate::config::Protocol::Ascii => "ascii",
        crate::config::Protocol::Auto => "auto-negotiate",
    };
    s("binding_protocol", V::Str(proto));
    s("auth_enabled_sasl", V::Bool(cfg.sasl));
    s("auth_enabled_ascii", V::Bool(false));
    s("item_size_max", V::U64(cfg.max_item_size as u64));
    s("maxconns_fast", V::Bool(cfg.ext.maxconns_fast));
    s(
        "hashpower_init",
        V::U64(cfg.ext.hashpower.unwrap_or(0) as u64),
    );
    s("slab_reassign", V::Bool(cfg.ext.slab_reassign));
    s("slab_automove", V::U64(env.shared.store.automove() as u64));
    s("slab_automove_ratio", V::F64(cfg.ext.slab_automove_ratio));
    s(
        "slab_automove_window",
        V::U64(cfg.ext.slab_automove_window as u64),
    );
    // The largest slab chunk: half a page (larger items are large items).
    s(
        "slab_chunk_max",
        V::U64((env.shared.store.budget().page_size / 2) as u64),
    );
    s("lru_crawler", V::Bool(super::env::CRAWLER_ON.load(Relaxed)));
    let (sleep, tocrawl) = crawler_settings();
    s("lru_crawler_sleep", V::U64(sleep as u64));
    s("lru_crawler_tocrawl", V::U64(tocrawl as u64));
    s("tail_repair_time", V::U64(0));
    s("flush_enabled", V::Bool(cfg.flush_enabled));
    s("dump_enabled", V::Bool(cfg.dump_enabled));
    s("hash_algorithm", V::Str("ahash"));
    s("lru_maintainer_thread", V::Bool(false));
    s("lru_segmented", V::Bool(false));
    s("hot_lru_pct", V::U64(20));
    s("warm_lru_pct", V::U64(40));
    s("hot_max_factor", V::F64(0.2));
    s("warm_max_factor", V::F64(2.0));
    s("temp_lru", V::Bool(false));
    s("temporary_ttl", V::U64(61));
    s("idle_timeout", V::U64(cfg.ext.idle_timeout as u64));
    s("watcher_logbuf_size", V::U64(262144));
    s("worker_logbuf_size", V::U64(65536));
    s("read_buf_mem_limit", V::U64(cfg.read_buf_mem_limit as u64));
    s("track_sizes", V::Bool(false));
    s("inline_ascii_response", V::Bool(false));
    s("ssl_enabled", V::Bool(env.shared.tls.is_some()));
    if let Some(t) = &env.shared.tls {
        let t = t.settings();
        let path = |p: &Option<std::path::PathBuf>| {
            p.as_ref()
                .map_or_else(|| "NULL".to_string(), |p| p.display().to_string())
        };
        let (chain, key, ca) = (path(&t.chain_cert), path(&t.key), path(&t.ca_cert));
        s("ssl_chain_cert", V::Str(&chain));
        s(
            "ssl_key",
            V::Str(if t.key.is_some() { &key } else { &chain }),
        );
        s("ssl_verify_mode", V::U64(t.verify_mode as u64));
        s("ssl_keyformat", V::U64(1));
        s("ssl_ciphers", V::Str("NULL"));
        s("ssl_ca_cert", V::Str(&ca));
        s("ssl_wbuf_size", V::U64(16384));
        s("ssl_session_cache", V::Bool(t.session_cache));
        s("ssl_kernel_tls", V::Bool(false));
        let min = if t.min_version >= 3 {
            "tlsv1.3"
        } else {
            "tlsv1.2"
        };
        s("ssl_min_version", V::Str(min));
    }
}

/// `stats items`: per-class item figures, memcached's names and order.
/// One CLOCK per class stands in for memcached's HOT/WARM/COLD queues: all
/// items count as cold, and `age` is the idle time of the item under the
/// CLOCK hand.
fn items(env: &Env<'_>, ctx: &Ctx, out: &mut Vec<u8>) {
    for c in env.shared.store.class_info() {
        if c.st.items == 0 {
            continue;
        }
        let st = &c.st;
        let fields: [(&str, u64); 28] = [
            ("number", st.items),
            ("number_hot", 0),
            ("number_warm", 0),
            ("number_cold", st.items),
            ("age_hot", 0),
            ("age_warm", 0),
            ("age", c.age),
            ("mem_requested", st.mem_requested),
            ("evicted", st.evicted),
            ("evicted_nonzero", st.evicted_nonzero),
            ("evicted_time", st.evicted_time as u64),
            ("outofmemory", st.outofmemory),
            ("tailrepairs", 0),
            ("reclaimed", st.reclaimed),
            ("expired_unfetched", st.expired_unfetched),
            ("evicted_unfetched", st.evicted_unfetched),
            ("evicted_active", st.evicted_active),
            ("crawler_reclaimed", 0),
            ("crawler_items_checked", 0),
            ("lrutail_reflocked", 0),
            ("moves_to_cold", 0),
            ("moves_to_warm", 0),
            ("moves_within_lru", 0),
            ("direct_reclaims", 0),
            ("hits_to_hot", 0),
            ("hits_to_warm", 0),
            ("hits_to_cold", st.get_hits),
            ("hits_to_temp", 0),
        ];
        for (name, v) in fields {
            emit(
                ctx,
                Response::StatParts {
                    prefix: "items:",
                    class: c.id,
                    name,
                    value: V::U64(v),
                },
                out,
            );
        }
    }
}

/// `stats slabs`: per-class page and chunk figures, then totals.
fn slabs(env: &Env<'_>, ctx: &Ctx, out: &mut Vec<u8>) {
    let classes = env.shared.store.class_info();
    let mut active = 0u64;
    for c in &classes {
        if c.total_pages == 0 {
            continue;
        }
        active += 1;
        let st = &c.st;
        let fields: [(&str, u64); 15] = [
            ("chunk_size", c.chunk_size),
            ("chunks_per_page", c.chunks_per_page),
            ("total_pages", c.total_pages),
            ("total_chunks", c.total_chunks),
            ("used_chunks", c.used_chunks),
            ("free_chunks", c.free_chunks),
            ("free_chunks_end", c.free_chunks_end),
            ("get_hits", st.get_hits),
            ("cmd_set", st.cmd_set),
            ("delete_hits", st.delete_hits),
            ("incr_hits", st.incr_hits),
            ("decr_hits", st.decr_hits),
            ("cas_hits", st.cas_hits),
            ("cas_badval", st.cas_badval),
            ("touch_hits", st.touch_hits),
        ];
        for (name, v) in fields {
            emit(
                ctx,
                Response::StatParts {
                    prefix: "",
                    class: c.id,
                    name,
                    value: V::U64(v),
                },
                out,
            );
        }
    }
    let store = &env.shared.store;
    let totals = store.stats();
    stat(ctx, "active_slabs", V::U64(active), out);
    stat(ctx, "total_malloced", V::U64(totals.mem_claimed), out);
    // corecached's own totals, after memcached's: how the shards share -m.
    let budget = store.budget();
    stat(ctx, "shards", V::U64(store.shard_count() as u64), out);
    stat(ctx, "slab_page_size", V::U64(budget.page_size as u64), out);
    stat(
        ctx,
        "shard_pages_borrowed",
        V::U64(totals.pages_borrowed),
        out,
    );
    stat(
        ctx,
        "shard_pages_returned",
        V::U64(totals.pages_returned),
        out,
    );
    stat(
        ctx,
        "shard_pages_pooled",
        V::U64(budget.pooled_pages() as u64),
        out,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command counter is shown exactly once, and no name twice: a
    /// counter added to `stats::counters!` without a row here fails.
    #[test]
    fn general_block_shows_every_counter_once() {
        let names: Vec<&str> = GENERAL.iter().map(|(n, _)| *n).collect();
        for (name, _) in Counters::default().fields() {
            let n = names.iter().filter(|&&r| r == name).count();
            assert_eq!(n, 1, "{name} shown {n} times");
        }
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "a name appears twice");
    }
}
