//! One decision for a realistic 20-rule policy (floor + application policy), and
//! policy lookup by name for sets of 100 and 10,000 policies.
//!
//! Run: `cargo bench -p sekisho-policy --bench evaluate`

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use sekisho_policy::{
    Certificate, Device, Fact, Identity, Input, Ownership, PolicySet, Request, Target,
};

fn realistic() -> PolicySet {
    PolicySet::compile(&[("realistic.yaml", include_str!("realistic.yaml"))])
        .map(|(s, _)| s)
        .unwrap_or_else(|d| panic!("{}", sekisho_yaml::render_all(&d)))
}

fn fixtures(now: Timestamp) -> (Identity, Device, Request<'static>) {
    let id = Identity {
        sub: "tanaka".into(),
        email: Some("tanaka@city.example.lg.jp".into()),
        groups: vec!["staff".into(), "library".into()],
        amr: vec!["pwd".into(), "otp".into()],
        auth_time: Some(now),
        ..Identity::default()
    };
    let dev = Device {
        certificate: Certificate::Present {
            id: "pc-1".into(),
            fingerprint: "ab".into(),
        },
        managed: Fact::known(true, now),
        compliant: Fact::known(true, now),
        ownership: Fact::known(Ownership::Corporate, now),
        os: Fact::known("windows".into(), now),
        os_version: Fact::known("10.0.22631".into(), now),
        disk_encryption: Fact::known(true, now),
        screen_lock: Fact::known(true, now),
        last_check_in: Fact::known(now, now),
        tags: Fact::known(vec!["lgwan".into()], now),
        ..Device::default()
    };
    let req = Request {
        method: "GET".into(),
        host: "apps.lgwan.example".into(),
        path: "/library/books".into(),
        zone: "lgwan".into(),
        route: "lgwan-apps".into(),
        source_ip: IpAddr::from([127, 0, 0, 1]),
    };
    (id, dev, req)
}

fn evaluate(c: &mut Criterion) {
    let set = realistic();
    let target = Target::with_floor(set.lookup("floor").unwrap(), set.lookup("app").unwrap());
    let day: Timestamp = "2026-04-14T10:00:00+09:00".parse().unwrap();
    let night: Timestamp = "2026-04-14T23:30:00+09:00".parse().unwrap();
    let (id, dev, req) = fixtures(day);
    let mut g = c.benchmark_group("evaluate");
    g.bench_function("allow_20_rules", |b| {
        let input = Input {
            identity: Some(&id),
            device: Some(&dev),
            request: &req,
            now: day,
        };
        b.iter(|| black_box(set.evaluate(black_box(target), black_box(&input))))
    });
    g.bench_function("default_deny_20_rules", |b| {
        let input = Input {
            identity: Some(&id),
            device: Some(&dev),
            request: &req,
            now: night,
        };
        b.iter(|| black_box(set.evaluate(black_box(target), black_box(&input))))
    });
    g.bench_function("login_required", |b| {
        let input = Input {
            identity: None,
            device: None,
            request: &req,
            now: day,
        };
        b.iter(|| black_box(set.evaluate(black_box(target), black_box(&input))))
    });
    g.finish();
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup_and_evaluate");
    let day: Timestamp = "2026-04-14T10:00:00+09:00".parse().unwrap();
    let (id, dev, req) = fixtures(day);
    for n in [100usize, 10_000] {
        let mut text = String::from("policies:\n");
        for i in 0..n {
            text.push_str(&format!(
                "  app-{i:05}:\n    allow:\n      - {{ groups: [staff, team-{i}], path: {{ prefix: [/app-{i}] }} }}\n"
            ));
        }
        let (set, _) = PolicySet::compile(&[("many.yaml", text)]).unwrap();
        let name = format!("app-{:05}", n / 2);
        g.bench_with_input(BenchmarkId::from_parameter(n), &name, |b, name| {
            let input = Input {
                identity: Some(&id),
                device: Some(&dev),
                request: &req,
                now: day,
            };
            b.iter(|| {
                let id = set.lookup(black_box(name)).unwrap();
                black_box(set.evaluate(Target::policy(id), &input))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, evaluate, lookup);
criterion_main!(benches);
