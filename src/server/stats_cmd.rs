//! `stats` and its groups, with memcached's field names and order. One
//! source for both text and binary (the encoder turns each line into a
//! `STAT name value` line or a binary stat packet). Binary keys are
//! matched as memcached's binary handler matches them (see [`binary`]).

use super::exec::{emit, stat, Env};
use crate::protocol::{Ctx, ErrorKind, Response, StatValue as V};
use crate::stats::rusage;
use crate::time;
use std::sync::atomic::Ordering::Relaxed;

pub fn stats(group: &[u8], _arg: &[u8], env: &Env<'_>, ctx: &Ctx, out: &mut Vec<u8>) {
    if ctx.binary {
        return binary(group, env, ctx, out);
    }
    match group {
        b"" => general(env, ctx, out),
        b"settings" => settings(env, ctx, out),
        b"detail" => {
            let reply: &[u8] = match _arg.split(|&b| b == b' ').find(|t| !t.is_empty()) {
                Some(b"on") | Some(b"off") => b"OK\r\n",
                Some(b"dump") => b"END\r\n",
                _ => b"CLIENT_ERROR usage: stats detail on|off|dump\r\n",
            };
            out.extend_from_slice(reply);
            return;
        }
        b"reset" => {
            env.shared.stats.reset();
            env.shared.store.reset_stats();
            if !ctx.noreply {
                out.extend_from_slice(b"RESET\r\n");
            }
            return;
        }
        b"items" => items(env, ctx, out),
        b"slabs" => slabs(env, ctx, out),
        b"replication" => {
            crate::replication::stats(env.shared.replication.as_ref(), &mut |n, v| {
                stat(ctx, n, v, out)
            })
        }
        // Size histograms are off (`track_sizes no`), as memcached's default.
        b"sizes" => stat(ctx, "sizes_status", V::Str("disabled"), out),
        b"conns" => {}
        _ => {
            emit(ctx, Response::Error(ErrorKind::UnknownCommand), out);
            return;
        }
    }
    emit(ctx, Response::StatsEnd, out);
}

/// Binary Stat, as memcached 1.6.18's `process_bin_stat` reads its key:
/// `reset`, `settings` and `detail` match as prefixes (`resetx` resets);
/// `detail` must go on with ` dump` (one `detailed` packet), ` on` or ` off`
/// (only the terminator), anything else is Not found; the other groups match
/// exactly (`items`, `slabs`, `sizes`), the rest is Not found. Every key gets
/// a reply.
fn binary(key: &[u8], env: &Env<'_>, ctx: &Ctx, out: &mut Vec<u8>) {
    if key.is_empty() {
        general(env, ctx, out);
    } else if key.starts_with(b"reset") {
        env.shared.stats.reset();
        env.shared.store.reset_stats();
    } else if key.starts_with(b"settings") {
        settings(env, ctx, out);
    } else if let Some(sub) = key.strip_prefix(b"detail") {
        if sub.starts_with(b" dump") {
            // Per-prefix stats are not kept: the dump is empty.
            stat(ctx, "detailed", V::Str("END\r\n"), out);
        } else if !(sub.starts_with(b" on") || sub.starts_with(b" off")) {
            emit(ctx, Response::NotFound, out);
            return;
        }
    } else {
        match key {
            b"items" => items(env, ctx, out),
            b"slabs" => slabs(env, ctx, out),
            b"sizes" => stat(ctx, "sizes_status", V::Str("disabled"), out),
            _ => {
                emit(ctx, Response::NotFound, out);
                return;
            }
        }
    }
    emit(ctx, Response::StatsEnd, out);
}

fn general(env: &Env<'_>, ctx: &Ctx, out: &mut Vec<u8>) {
    let sh = env.shared;
    let c = sh.stats.sum();
    let items = sh.store.stats();
    let (ru_user, ru_sys) = rusage();
    let cfg = &sh.config;
    let now = time::now();
    let mut s = |name, v| stat(ctx, name, v, out);
    s("pid", V::U64(std::process::id() as u64));
    s("uptime", V::U64(time::uptime() as u64));
    s("time", V::I64(time::to_unix(now)));
    s("version", V::Str(super::VERSION));
    s("libevent", V::Str("monoio"));
    s("pointer_size", V::U64(64));
    s("rusage_user", V::Micros(ru_user));
    s("rusage_system", V::Micros(ru_sys));
    s("max_connections", V::U64(cfg.conn_limit as u64));
    s(
        "curr_connections",
        V::U64(sh.stats.curr_connections.load(Relaxed)),
    );
    s(
        "total_connections",
        V::U64(sh.stats.total_connections.load(Relaxed)),
    );
    s(
        "rejected_connections",
        V::U64(sh.stats.rejected_connections.load(Relaxed)),
    );
    s(
        "connection_structures",
        V::U64(sh.stats.curr_connections.load(Relaxed)),
    );
    let g = |a: &std::sync::atomic::AtomicU64| V::U64(a.load(Relaxed));
    // Connection buffers (server::conn): output buffers are memcached's
    // response objects, input buffers its read buffers. Buffers go back to
    // the allocator, so none is ever free-but-held.
    s("response_obj_oom", g(&sh.stats.response_obj_oom));
    s("response_obj_count", g(&sh.stats.response_obj_count));
    s("response_obj_bytes", g(&sh.stats.response_obj_bytes));
    s("read_buf_count", g(&sh.stats.read_buf_count));
    s("read_buf_bytes", g(&sh.stats.read_buf_bytes));
    s("read_buf_bytes_free", V::U64(0));
    s("read_buf_oom", g(&sh.stats.read_buf_oom));
    s("reserved_fds", V::U64(0));
    for (name, v) in c.fields() {
        let v = match name {
            "get_expired" => items.get_expired,
            "get_flushed" => items.get_flushed,
            _ => v,
        };
        if name == "bytes_read" || name == "conn_yields" {
            // memcached prints the byte counters after the auth counters.
            continue;
        }
        if name == "bytes_written" {
            s("bytes_read", V::U64(c.bytes_read));
            s("bytes_written", V::U64(c.bytes_written));
            continue;
        }
        s(name, V::U64(v));
    }
    s("limit_maxbytes", V::U64(cfg.memory_limit as u64));
    s("accepting_conns", V::U64(1));
    s("listen_disabled_num", V::U64(0));
    s("time_in_listen_disabled_us", V::U64(0));
    s("threads", V::U64(cfg.threads as u64));
    s("conn_yields", V::U64(c.conn_yields));
    s("hash_power_level", V::U64(items.hash_power_level));
    s("hash_bytes", V::U64(items.index_bytes));
    s("hash_is_expanding", V::U64(items.hash_is_expanding));
    s("slab_reassign_rescues", V::U64(items.slab_reassign_rescues));
    s("slab_reassign_chunk_rescues", V::U64(0));
    s(
        "slab_reassign_evictions_nomem",
        V::U64(items.slab_reassign_evictions_nomem),
    );
    for name in [
        "slab_reassign_inline_reclaim",
        "slab_reassign_busy_items",
        "slab_reassign_busy_deletes",
        "slab_reassign_running",
    ] {
        s(name, V::U64(0));
    }
    s("slabs_moved", V::U64(items.slabs_moved));
    for name in [
        "lru_crawler_running",
        "lru_crawler_starts",
        "lru_maintainer_juggles",
        "malloc_fails",
        "log_worker_dropped",
        "log_worker_written",
        "log_watcher_skipped",
        "log_watcher_sent",
        "log_watchers",
        "unexpected_napi_ids",
        "round_robin_fallback",
    ] {
        s(name, V::U64(0));
    }
    s("bytes", V::U64(items.bytes));
    s("curr_items", V::U64(items.curr_items));
    s("total_items", V::U64(items.total_items));
    // Free pages waiting in the shared pool (memcached: pages in its
    // global pool, not assigned to a class).
    s(
        "slab_global_page_pool",
        V::U64(sh.store.budget().pooled_pages() as u64),
    );
    s("expired_unfetched", V::U64(items.expired_unfetched));
    s("evicted_unfetched", V::U64(items.evicted_unfetched));
    s("evicted_active", V::U64(items.evicted_active));
    s("evictions", V::U64(items.evictions));
    s("reclaimed", V::U64(items.reclaimed));
    for name in [
        "crawler_reclaimed",
        "crawler_items_checked",
        "lrutail_reflocked",
        "moves_to_cold",
        "moves_to_warm",
        "moves_within_lru",
        "direct_reclaims",
        "lru_bumps_dropped",
    ] {
        s(name, V::U64(0));
    }
}

fn settings(env: &Env<'_>, ctx: &Ctx, out: &mut Vec<u8>) {
    let cfg = &env.shared.config;
    let inter = cfg
        .listen
        .first()
        .map(|a| a.to_string())
        .unwrap_or_else(|| "NULL".into());
    let mut s = |name, v| stat(ctx, name, v, out);
    s("maxbytes", V::U64(cfg.memory_limit as u64));
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
    s("domain_socket", V::Str("NULL"));
    s("umask", V::U64(700));
    s("shutdown_command", V::Bool(false));
    s("growth_factor", V::F64(cfg.growth_factor));
    s("chunk_size", V::U64(cfg.chunk_size as u64));
    s("num_threads", V::U64(cfg.threads as u64));
    s("num_threads_per_udp", V::U64(cfg.threads as u64));
    s("stat_key_prefix", V::Str(":"));
    s("detail_enabled", V::Bool(false));
    s("reqs_per_event", V::U64(20));
    s("cas_enabled", V::Bool(true));
    s("tcp_backlog", V::U64(1024));
    // memcached binds to the binary protocol when SASL is on.
    s(
        "binding_protocol",
        V::Str(if cfg.sasl { "binary" } else { "auto-negotiate" }),
    );
    s("auth_enabled_sasl", V::Bool(cfg.sasl));
    s("auth_enabled_ascii", V::Bool(false));
    s("item_size_max", V::U64(cfg.max_item_size as u64));
    s("maxconns_fast", V::Bool(true));
    s("hashpower_init", V::U64(0));
    s("slab_reassign", V::Bool(true));
    s("slab_automove", V::U64(env.shared.store.automove() as u64));
    s("slab_automove_ratio", V::F64(0.8));
    s("slab_automove_window", V::U64(30));
    // The largest slab chunk: half a page (larger items are large items).
    s(
        "slab_chunk_max",
        V::U64((env.shared.store.budget().page_size / 2) as u64),
    );
    s("lru_crawler", V::Bool(true));
    let (sleep, tocrawl) = super::admin::crawler_settings();
    s("lru_crawler_sleep", V::U64(sleep as u64));
    s("lru_crawler_tocrawl", V::U64(tocrawl as u64));
    s("tail_repair_time", V::U64(0));
    s("flush_enabled", V::Bool(true));
    s("dump_enabled", V::Bool(true));
    s("hash_algorithm", V::Str("ahash"));
    s("lru_maintainer_thread", V::Bool(false));
    s("lru_segmented", V::Bool(false));
    s("hot_lru_pct", V::U64(20));
    s("warm_lru_pct", V::U64(40));
    s("hot_max_factor", V::F64(0.2));
    s("warm_max_factor", V::F64(2.0));
    s("temp_lru", V::Bool(false));
    s("temporary_ttl", V::U64(61));
    s("idle_timeout", V::U64(0));
    s("watcher_logbuf_size", V::U64(262144));
    s("worker_logbuf_size", V::U64(65536));
    s("read_buf_mem_limit", V::U64(cfg.read_buf_mem_limit as u64));
    s("track_sizes", V::Bool(false));
    s("inline_ascii_response", V::Bool(false));
    s("ssl_enabled", V::Bool(false));
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
