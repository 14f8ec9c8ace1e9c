//! Property tests: the shard agrees with a model HashMap with TTLs.
use super::*;
use proptest::prelude::*;
use std::collections::HashMap;

#[derive(Debug, Clone)]
enum Op {
    Set(u8, Vec<u8>, u8, u32),
    Add(u8, Vec<u8>, u8),
    Replace(u8, Vec<u8>),
    Append(u8, Vec<u8>),
    Prepend(u8, Vec<u8>),
    Cas(u8, Vec<u8>, bool),
    Delete(u8),
    Incr(u8, u64),
    Decr(u8, u64),
    Touch(u8, u8),
    Get(u8),
    Advance(u8),
    Tick,
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0u8..24;
    let val = prop::collection::vec(prop::sample::select(b"0123456789 ab".to_vec()), 0..40);
    prop_oneof![
        4 => (key.clone(), val.clone(), 0u8..4, 0u32..3).prop_map(|(k, v, t, f)| Op::Set(k, v, t, f)),
        1 => (key.clone(), val.clone(), 0u8..4).prop_map(|(k, v, t)| Op::Add(k, v, t)),
        1 => (key.clone(), val.clone()).prop_map(|(k, v)| Op::Replace(k, v)),
        1 => (key.clone(), val.clone()).prop_map(|(k, v)| Op::Append(k, v)),
        1 => (key.clone(), val.clone()).prop_map(|(k, v)| Op::Prepend(k, v)),
        1 => (key.clone(), val.clone(), any::<bool>()).prop_map(|(k, v, g)| Op::Cas(k, v, g)),
        2 => key.clone().prop_map(Op::Delete),
        1 => (key.clone(), 0u64..1000).prop_map(|(k, d)| Op::Incr(k, d)),
        1 => (key.clone(), 0u64..1000).prop_map(|(k, d)| Op::Decr(k, d)),
        1 => (key.clone(), 0u8..4).prop_map(|(k, t)| Op::Touch(k, t)),
        4 => key.prop_map(Op::Get),
        2 => (0u8..3).prop_map(Op::Advance),
        1 => Just(Op::Tick),
        1 => Just(Op::Flush),
    ]
}

#[derive(Debug, Clone)]
struct M {
    v: Vec<u8>,
    flags: u32,
    exp: u32,
    cas: u64,
}

fn exp_of(ttl: u8, now: u32) -> u32 {
    if ttl == 0 {
        0
    } else {
        now + ttl as u32
    }
}

fn run_model(ops: Vec<Op>, mem: usize) {
    let mut s = Shard::new(
        0,
        1,
        &StoreConfig {
            mem_limit: mem,
            ..Default::default()
        },
    );
    let mut m: HashMap<Vec<u8>, M> = HashMap::new();
    let mut now = 100u32;
    for op in ops {
        // the model forgets expired items
        m.retain(|_, it| !crate::time::is_expired(it.exp, now));
        let is_append = matches!(op, Op::Append(..));
        let is_incr = matches!(op, Op::Incr(..));
        match op {
            Op::Set(k, v, t, f) => {
                let key = vec![b'k', k];
                let exp = exp_of(t, now);
                let r = s.store(
                    &StoreRequest {
                        flags: f,
                        exptime: exp,
                        ..StoreRequest::new(StoreMode::Set, &key, &v)
                    },
                    now,
                );
                let StoreResult::Stored { cas, .. } = r else {
                    panic!("{r:?}")
                };
                m.insert(
                    key,
                    M {
                        v,
                        flags: f,
                        exp,
                        cas,
                    },
                );
            }
            Op::Add(k, v, t) => {
                let key = vec![b'k', k];
                let exp = exp_of(t, now);
                let r = s.store(
                    &StoreRequest {
                        exptime: exp,
                        ..StoreRequest::new(StoreMode::Add, &key, &v)
                    },
                    now,
                );
                match m.entry(key) {
                    std::collections::hash_map::Entry::Occupied(_) => {
                        assert_eq!(r, StoreResult::NotStored);
                    }
                    std::collections::hash_map::Entry::Vacant(e) => {
                        let StoreResult::Stored { cas, .. } = r else {
                            panic!("{r:?}")
                        };
                        e.insert(M {
                            v,
                            flags: 0,
                            exp,
                            cas,
                        });
                    }
                }
            }
            Op::Replace(k, v) => {
                let key = vec![b'k', k];
                let r = s.store(
                    &StoreRequest {
                        flags: 1,
                        ..StoreRequest::new(StoreMode::Replace, &key, &v)
                    },
                    now,
                );
                match m.get_mut(&key) {
                    None => assert_eq!(r, StoreResult::NotStored),
                    Some(it) => {
                        let StoreResult::Stored { cas, .. } = r else {
                            panic!("{r:?}")
                        };
                        *it = M {
                            v,
                            flags: 1,
                            exp: 0,
                            cas,
                        };
                    }
                }
            }
            Op::Append(k, v) | Op::Prepend(k, v) => {
                let key = vec![b'k', k];
                let app = is_append;
                let mode = if app {
                    StoreMode::Append
                } else {
                    StoreMode::Prepend
                };
                let r = s.store(
                    &StoreRequest {
                        flags: 9,
                        ..StoreRequest::new(mode, &key, &v)
                    },
                    now,
                );
                match m.get_mut(&key) {
                    None => assert_eq!(r, StoreResult::NotStored),
                    Some(it) => {
                        let StoreResult::Stored { cas, .. } = r else {
                            panic!("{r:?}")
                        };
                        if app {
                            it.v.extend_from_slice(&v);
                        } else {
                            let mut n = v.clone();
                            n.extend_from_slice(&it.v);
                            it.v = n;
                        }
                        it.cas = cas;
                    }
                }
            }
            Op::Cas(k, v, good) => {
                let key = vec![b'k', k];
                let cur = m.get(&key).map(|it| it.cas);
                let given = match (cur, good) {
                    (Some(c), true) => c,
                    (Some(c), false) => c + 1,
                    (None, _) => 12345,
                };
                let r = s.store(
                    &StoreRequest {
                        flags: 2,
                        cas: given,
                        ..StoreRequest::new(StoreMode::Cas, &key, &v)
                    },
                    now,
                );
                match (cur, good) {
                    (None, _) => assert_eq!(r, StoreResult::NotFound),
                    (Some(_), false) => assert_eq!(r, StoreResult::Exists),
                    (Some(_), true) => {
                        let StoreResult::Stored { cas, .. } = r else {
                            panic!("{r:?}")
                        };
                        m.insert(
                            key,
                            M {
                                v,
                                flags: 2,
                                exp: 0,
                                cas,
                            },
                        );
                    }
                }
            }
            Op::Delete(k) => {
                let key = vec![b'k', k];
                let r = s.delete(&DeleteRequest::new(&key), now);
                let want = if m.remove(&key).is_some() {
                    DeleteResult::Deleted
                } else {
                    DeleteResult::NotFound
                };
                assert_eq!(r, want);
            }
            Op::Incr(k, d) | Op::Decr(k, d) => {
                let key = vec![b'k', k];
                let incr = is_incr;
                let r = s.arith(&ArithRequest::new(&key, incr, d), now);
                match m.get_mut(&key) {
                    None => assert_eq!(r, ArithResult::NotFound),
                    Some(it) => match strtoull(&it.v) {
                        None => assert_eq!(r, ArithResult::NonNumeric),
                        Some(cur) => {
                            let want = if incr {
                                cur.wrapping_add(d)
                            } else {
                                cur.saturating_sub(d)
                            };
                            let ArithResult::Value { value, cas, .. } = r else {
                                panic!("{r:?}")
                            };
                            assert_eq!(value, want);
                            let digits = want.to_string().into_bytes();
                            if digits.len() <= it.v.len() {
                                let mut nv = digits.clone();
                                nv.resize(it.v.len(), b' ');
                                it.v = nv;
                            } else {
                                it.v = digits;
                            }
                            it.cas = cas;
                        }
                    },
                }
            }
            Op::Touch(k, t) => {
                let key = vec![b'k', k];
                let exp = exp_of(t, now);
                let r = s.touch(&key, exp, now);
                match m.get_mut(&key) {
                    None => assert_eq!(r, None),
                    Some(it) => {
                        assert_eq!(r, Some(it.cas));
                        it.exp = exp;
                    }
                }
            }
            Op::Get(k) => {
                let key = vec![b'k', k];
                let got = s
                    .get(&key, now, None)
                    .map(|it| (it.value.to_vec(), it.flags, it.cas));
                let want = m.get(&key).map(|it| (it.v.clone(), it.flags, it.cas));
                assert_eq!(got, want, "key {k} at {now}");
            }
            Op::Advance(d) => now += d as u32,
            Op::Tick => {
                while s.tick(now) {}
                assert_eq!(s.stats().curr_items, m.len() as u64);
            }
            Op::Flush => {
                s.flush_all(now, now);
                m.clear();
            }
        }
    }
    // final agreement
    m.retain(|_, it| !crate::time::is_expired(it.exp, now));
    for k in 0..24u8 {
        let key = vec![b'k', k];
        let got = s.get(&key, now, None).map(|it| it.value.to_vec());
        assert_eq!(got, m.get(&key).map(|it| it.v.clone()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn shard_agrees_with_model(ops in prop::collection::vec(op(), 1..300)) {
        run_model(ops, 64 << 20);
    }

    /// Small memory, mixed sizes: the cache may forget, but a get never
    /// returns a wrong value and memory stays within the budget (plus
    /// the bounded first-page credit).
    #[test]
    fn small_memory_never_lies(ops in prop::collection::vec(
        (0u16..400, 0usize..40_000, any::<bool>()), 1..400)) {
        let limit = 512 << 10;
        let mut s = Shard::new(0, 1, &StoreConfig { mem_limit: limit, ..Default::default() });
        let mut m: HashMap<u16, Vec<u8>> = HashMap::new();
        for (i, (k, len, is_set)) in ops.into_iter().enumerate() {
            let key = format!("key{k}");
            if is_set {
                let v: Vec<u8> = (0..len).map(|j| (j as u8) ^ (k as u8) ^ (i as u8)).collect();
                let r = s.store(&StoreRequest::new(StoreMode::Set, key.as_bytes(), &v), 10);
                prop_assert!(matches!(r, StoreResult::Stored { .. }), "{:?}", r);
                m.insert(k, v);
            } else if let Some(it) = s.get(key.as_bytes(), 10, None) {
                prop_assert_eq!(Some(&it.value.to_vec()), m.get(&k));
            }
            if i % 50 == 0 {
                while s.tick(10) {}
            }
            s.engine.refresh_stats();
            let a = &s.engine.arena;
            prop_assert!(a.claimed <= a.limit + a.debt_max, "claimed {}", a.claimed);
        }
    }
}
