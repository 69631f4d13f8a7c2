//! The vault through a real HAProxy 2.6 running the shipped `docs/haproxy/suiftly.cfg`:
//! versions written to disk and pushed over the runtime API decide who passes, with which
//! status, traffic type and event type in the logged sf1 line (parsed by the production
//! parser), and the tier rate limits split traffic into guaranteed, burst and denied.

mod gateway;

use std::time::Duration;

use gateway::{Gateway, LogSink, request, spawn_origin};
use suiftly_vault::runtime::{self, Endpoint, PushPolicy, RuntimeError};
use suiftly_vault::{
    ApiKeyCodec, KeyRecord, RateLimits, Secret, ServiceLetter, ServiceRecord, Suspension, Tier,
    VaultFiles, VaultInput, WriteOutcome, build,
};

/// Fixture customers live far above the synthetic ones (which start at 1,000).
const BASE: u32 = 2_000_000_000;

fn make_key(customer_id: u32, service_type: u8, iv: u32) -> KeyRecord {
    let codec = ApiKeyCodec::new(&Secret::development());
    let letter = match service_type {
        1 => ServiceLetter::Seal,
        2 => ServiceLetter::Grpc,
        _ => ServiceLetter::Graphql,
    };
    let key = codec
        .encode_with_iv(letter, customer_id, 0x2900, iv.to_be_bytes())
        .unwrap();
    KeyRecord {
        customer_id,
        service_type,
        fingerprint: suiftly_vault::apikey::fingerprint(&key).unwrap(),
        encrypted_key: vec![1, 2, 3],
        key,
        metadata: 0x2900,
        revoked: false,
    }
}

fn service(customer_id: u32, service_type: u8, tier: Tier, burst: bool) -> ServiceRecord {
    ServiceRecord {
        customer_id,
        service_type,
        tier,
        burst,
        enabled: true,
        suspended: None,
    }
}

/// Small rates so a test can cross them with a few sequential requests; enterprise stays
/// high for the keys whose state (not rate) is under test.
fn limits() -> RateLimits {
    RateLimits {
        starter_rps: 2,
        pro_rps: 3,
        enterprise_rps: 100_000,
        burst_ceiling_percent: 200,
        gateways_per_region: 1,
    }
}

struct Counter(u32);
impl Counter {
    /// A unique path whose 10-character prefix names the request in the logs.
    fn path(&mut self) -> String {
        self.0 += 1;
        format!("/q{:09}", self.0)
    }
}

/// (status, traffic_type, event_type, customer logged) of one request.
fn send(
    gw: &Gateway,
    logs: &mut LogSink,
    n: &mut Counter,
    key: Option<&str>,
) -> (u16, i16, i16, Option<i32>) {
    let path = n.path();
    let (status, _) = request(gw.fe_port, &path, key);
    let l = logs.line(&path[1..]);
    assert_eq!(l.status as u16, status, "{path}: logged status");
    (status, l.traffic_type, l.event_type, l.customer_id)
}

#[test]
fn versions_written_and_pushed_decide_who_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let origin = spawn_origin();
    let mut logs = LogSink::bind();
    let mut n = Counter(0);

    // --- version 1 on disk ------------------------------------------------------------------
    let (active, revoked, disabled, susp, limit, nosvc, seal) = (
        BASE + 1,
        BASE + 2,
        BASE + 3,
        BASE + 4,
        BASE + 5,
        BASE + 6,
        BASE + 7,
    );
    // 3,000 other keys so that a push takes many 15 KiB chunks.
    let mut input = suiftly_vault::synth::synthetic(3_000, 12, &Secret::development());
    for cid in [active, revoked, disabled, susp, limit, seal] {
        let svc = if cid == seal { 1 } else { 2 };
        input
            .services
            .push(service(cid, svc, Tier::Enterprise, false));
    }
    input
        .services
        .iter_mut()
        .find(|s| s.customer_id == disabled)
        .unwrap()
        .enabled = false;
    input
        .services
        .iter_mut()
        .find(|s| s.customer_id == susp)
        .unwrap()
        .suspended = Some(Suspension::InsufficientBalance);
    input
        .services
        .iter_mut()
        .find(|s| s.customer_id == limit)
        .unwrap()
        .suspended = Some(Suspension::MonthlyLimit);
    let k = |cid: u32, svc: u8| make_key(cid, svc, cid - BASE);
    let keys = [
        k(active, 2),
        KeyRecord {
            revoked: true,
            ..k(revoked, 2)
        },
        k(disabled, 2),
        k(susp, 2),
        k(limit, 2),
        k(nosvc, 2),
        k(seal, 1),
    ];
    input.keys.extend(keys.iter().cloned());
    let files = VaultFiles::new(tmp.path().join("vault"), 4);
    let v1 = build(&input, &limits()).unwrap();
    assert!(matches!(
        files.write(&v1, 0).unwrap(),
        WriteOutcome::Written { seq: 1, .. }
    ));
    let gw = Gateway::start(tmp.path(), &files.map_path(), logs.port(), origin);

    // --- every state refused or served as designed ---------------------------------------------
    let key = |i: usize| Some(keys[i].key.as_str());
    let expect = [
        (key(0), 200, 1, 0, Some(active as i32)),
        (key(1), 403, 3, 31, Some(revoked as i32)),
        (key(2), 403, 3, 30, Some(disabled as i32)),
        (key(3), 402, 3, 30, Some(susp as i32)),
        (key(4), 402, 3, 30, Some(limit as i32)),
        (key(5), 403, 3, 32, Some(nosvc as i32)),
        // a seal key on the grpc frontend
        (key(6), 403, 3, 32, Some(seal as i32)),
        (
            Some("RZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ"),
            403,
            3,
            11,
            None,
        ),
        // the version marker's name is not a key
        (Some("@suiftly-vault"), 403, 3, 11, None),
        (None, 401, 3, 10, None),
    ];
    for (i, (key, status, tt, ev, cid)) in expect.iter().enumerate() {
        assert_eq!(
            send(&gw, &mut logs, &mut n, *key),
            (*status, *tt, *ev, *cid),
            "v1 case {i} key {key:?}"
        );
    }
    // The refusal body says why, as JSON.
    let (_, body) = request(gw.fe_port, "/x", key(1));
    assert_eq!(body, r#"{"error":"api_key_revoked"}"#);

    // --- version 2: file first, then pushed live --------------------------------------------
    input
        .keys
        .iter_mut()
        .find(|x| x.key == keys[0].key)
        .unwrap()
        .revoked = true;
    for s in input.services.iter_mut() {
        if s.customer_id == susp {
            s.suspended = None;
        }
        if s.customer_id == disabled {
            s.enabled = true;
        }
    }
    let fresh = make_key(active, 2, 999);
    input.keys.push(fresh.clone());
    let v2 = build(&input, &limits()).unwrap();
    assert_eq!(files.write(&v2, 0).unwrap().seq(), 2);
    // Before the push the running HAProxy still serves version 1.
    assert_eq!(send(&gw, &mut logs, &mut n, key(0)).0, 200);
    assert_eq!(send(&gw, &mut logs, &mut n, Some(&fresh.key)).0, 403);
    let map_text = std::fs::read_to_string(files.map_path()).unwrap();
    let outcomes = runtime::push_all(
        &[gw.vault_gateway("gw1")],
        &map_text,
        &PushPolicy::default(),
    );
    let applied = outcomes[0].result.as_ref().expect("push succeeds");
    assert_eq!(applied.seq, 2);
    assert_eq!(applied.hash, v2.hash_hex());
    assert!(!applied.already);
    assert!(applied.chunks > 10, "{} chunks", applied.chunks);
    assert_eq!(applied.entries, v2.keys() as u64 + 1);
    // show map: HAProxy's committed version and the entry count
    let show = gw.cli("show map");
    assert!(
        show.contains(&format!(
            "curr_ver={} next_ver={} entry_cnt={}",
            applied.haproxy_version,
            applied.haproxy_version,
            v2.keys() + 1
        )),
        "{show}"
    );
    assert_eq!(
        send(&gw, &mut logs, &mut n, key(0)),
        (403, 3, 31, Some(active as i32)),
        "revoked by the push"
    );
    assert_eq!(
        send(&gw, &mut logs, &mut n, Some(&fresh.key)),
        (200, 1, 0, Some(active as i32))
    );
    assert_eq!(
        send(&gw, &mut logs, &mut n, key(3)),
        (200, 1, 0, Some(susp as i32)),
        "resumed"
    );
    assert_eq!(
        send(&gw, &mut logs, &mut n, key(2)),
        (200, 1, 0, Some(disabled as i32)),
        "enabled"
    );

    // Pushing the same version again sends nothing.
    let again = runtime::push_all(
        &[gw.vault_gateway("gw1")],
        &map_text,
        &PushPolicy::default(),
    );
    assert!(again[0].result.as_ref().unwrap().already);

    // --- a reload never rolls back: the file is the latest version -----------------------------
    let mut gw = gw;
    gw.restart();
    let mut c = runtime::RuntimeClient::connect(&gw.endpoint(), Duration::from_secs(5)).unwrap();
    assert_eq!(
        c.applied(gw.map_path.to_str().unwrap()).unwrap(),
        Some((2, v2.hash_hex()))
    );
    assert_eq!(send(&gw, &mut logs, &mut n, key(0)).0, 403);
    assert_eq!(send(&gw, &mut logs, &mut n, Some(&fresh.key)).0, 200);
}

#[test]
fn tier_rate_limits_split_guaranteed_burst_and_denied() {
    let tmp = tempfile::tempdir().unwrap();
    let origin = spawn_origin();
    let mut logs = LogSink::bind();
    let mut n = Counter(0);
    let (pro, starter) = (BASE + 10, BASE + 11);
    let input = VaultInput {
        customers: vec![],
        services: vec![
            service(pro, 2, Tier::Pro, true),
            service(starter, 2, Tier::Starter, false),
        ],
        keys: vec![make_key(pro, 2, 1), make_key(starter, 2, 2)],
    };
    let files = VaultFiles::new(tmp.path().join("vault"), 2);
    files.write(&build(&input, &limits()).unwrap(), 0).unwrap();
    let gw = Gateway::start(tmp.path(), &files.map_path(), logs.port(), origin);
    let (g_pro, c_pro) = limits().gateway_rps(Tier::Pro, true);
    let (g_st, c_st) = limits().gateway_rps(Tier::Starter, false);
    assert_eq!((g_pro, c_pro, g_st, c_st), (3, 6, 2, 2));

    // Rounds of back-to-back requests, a second apart, until each kind was seen. What a round
    // shows depends on how fast the machine sends; these properties hold at any speed:
    // nothing is refused before the ceiling was served in the round, nothing is burst before
    // the guaranteed rate was, and every logged type matches its status.
    let mut seen = std::collections::BTreeSet::new();
    for round in 0..10 {
        for (key, g, c, tier) in [
            (&input.keys[0].key, g_pro, c_pro, "pro"),
            (&input.keys[1].key, g_st, c_st, "starter"),
        ] {
            let results: Vec<_> = (0..3 * c)
                .map(|_| send(&gw, &mut logs, &mut n, Some(key)))
                .collect();
            for (i, (status, tt, ev, _)) in results.iter().enumerate() {
                match (status, tt, ev) {
                    (200, 1, 0) => {}
                    (200, 2, 0) => {
                        assert!(i as u32 >= g, "{tier} round {round}: burst at {i} < {g}");
                        assert!(c > g, "{tier}: burst without a burst allowance");
                    }
                    (429, 3, 21) => {
                        assert!(i as u32 >= c, "{tier} round {round}: refused at {i} < {c}")
                    }
                    other => panic!("{tier} round {round} request {i}: {other:?}"),
                }
                seen.insert((tier, *tt));
            }
        }
        if seen.len() == 5 {
            break;
        }
        std::thread::sleep(Duration::from_millis(1100));
    }
    let want = [
        ("pro", 1),
        ("pro", 2),
        ("pro", 3),
        ("starter", 1),
        ("starter", 3),
    ];
    assert_eq!(seen, want.into_iter().collect(), "every kind was seen");
}

#[test]
fn an_unreachable_gateway_never_blocks_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let origin = spawn_origin();
    let logs = LogSink::bind();
    let input = suiftly_vault::synth::synthetic(200, 3, &Secret::development());
    let files = VaultFiles::new(tmp.path().join("vault"), 2);
    files.write(&build(&input, &limits()).unwrap(), 0).unwrap();
    let input2 = suiftly_vault::synth::synthetic(210, 3, &Secret::development());
    let gw = Gateway::start(tmp.path(), &files.map_path(), logs.port(), origin);
    files.write(&build(&input2, &limits()).unwrap(), 0).unwrap();
    let map_text = std::fs::read_to_string(files.map_path()).unwrap();

    // Accepts connections (kernel backlog) and never answers.
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gateways = vec![
        runtime::Gateway {
            name: "hangs".into(),
            endpoint: Endpoint::Tcp(blackhole.local_addr().unwrap().to_string()),
            map: gw.map_path.to_str().unwrap().into(),
        },
        runtime::Gateway {
            name: "gone".into(),
            endpoint: Endpoint::Unix(tmp.path().join("nobody.sock")),
            map: gw.map_path.to_str().unwrap().into(),
        },
        gw.vault_gateway("good"),
        runtime::Gateway {
            name: "wrong-map".into(),
            endpoint: gw.endpoint(),
            map: "/etc/haproxy/not-loaded.map".into(),
        },
    ];
    let policy = PushPolicy {
        io_timeout: Duration::from_millis(700),
        attempts: 3,
        backoff: Duration::from_millis(50),
    };
    let out = runtime::push_all(&gateways, &map_text, &policy);
    let by = |name: &str| out.iter().find(|o| o.gateway == name).unwrap();
    let good = by("good");
    assert_eq!(good.result.as_ref().unwrap().seq, 2);
    assert_eq!(good.attempts, 1);
    let hangs = by("hangs");
    assert!(
        matches!(hangs.result, Err(RuntimeError::Io(_))),
        "{:?}",
        hangs.result
    );
    assert_eq!(hangs.attempts, 3, "retried");
    assert!(
        good.elapsed < hangs.elapsed,
        "the good gateway finished first ({:?} vs {:?})",
        good.elapsed,
        hangs.elapsed
    );
    let gone = by("gone");
    assert!(matches!(gone.result, Err(RuntimeError::Connect { .. })));
    assert_eq!(gone.attempts, 3);
    let wrong = by("wrong-map");
    assert!(
        matches!(wrong.result, Err(RuntimeError::NoSuchMap(_))),
        "{:?}",
        wrong.result
    );
    assert_eq!(wrong.attempts, 1, "a config error is not retried");
    drop(blackhole);
}
