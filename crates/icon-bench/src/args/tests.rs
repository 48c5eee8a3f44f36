//! The command line's parsing and validation.

use super::*;

fn run(args: &[&str]) -> Result<Config, ArgError> {
    let args = args.iter().map(|s| s.to_string());
    match parse(args, Some("s3cret".into()))? {
        Parsed::Run(c) => Ok(*c),
        Parsed::Help => panic!("unexpected help"),
    }
}

#[test]
fn defaults_are_steady_at_20_per_second_for_60s() {
    let c = run(&[]).unwrap();
    assert_eq!(c.scenario, Scenario::Steady);
    assert_eq!(c.load, Load::Rate(20.0));
    assert_eq!(c.stop, Stop::Duration(Duration::from_secs(60)));
    assert_eq!(c.gateway, "http://127.0.0.1:8080");
    assert_eq!(c.sim_from_icon, "http://127.0.0.1:8090");
    assert_eq!(c.jwt_secret, "s3cret");
    assert_eq!(c.retailers_per_cart, 1);
    assert_eq!(c.carts_needed(), 1200);
}

#[test]
fn max_defaults_to_32_in_flight_and_takes_both_flag_forms() {
    let c = run(&[
        "--scenario",
        "max",
        "--duration=20s",
        "--gateway",
        "http://h:1/",
    ])
    .unwrap();
    assert_eq!(c.load, Load::Concurrency(32));
    assert_eq!(c.stop, Stop::Duration(Duration::from_secs(20)));
    assert_eq!(c.gateway, "http://h:1");
    assert_eq!(c.carts_needed(), 4000);
}

#[test]
fn fan_out_takes_retailers_per_cart_and_count() {
    let c = run(&[
        "--scenario",
        "fan-out",
        "--retailers-per-cart",
        "10",
        "--count",
        "7",
    ])
    .unwrap();
    assert_eq!(c.retailers_per_cart, 10);
    assert_eq!(c.stop, Stop::Count(7));
    assert_eq!(c.carts_needed(), 7);
}

#[test]
fn unknown_scenarios_are_refused_by_name() {
    let e = run(&["--scenario", "nope"]).unwrap_err();
    assert!(e.0.contains("unknown") && e.0.contains("backlog"), "{e}");
}

#[test]
fn backlog_is_steady_twice_with_100000_waiting_by_default() {
    let c = run(&["--scenario", "backlog"]).unwrap();
    assert_eq!(c.scenario, Scenario::Backlog);
    assert_eq!(c.scenario.name(), "backlog");
    assert_eq!(c.backlog, Some(100_000));
    assert_eq!(c.load, Load::Rate(20.0));
    assert_eq!(c.stop, Stop::Duration(Duration::from_secs(60)));
    // Per measured phase; the scenario makes two phases' worth and the backlog's own.
    assert_eq!(c.carts_needed(), 1200);
    let c = run(&[
        "--scenario=backlog",
        "--backlog=500",
        "--rate",
        "5",
        "--count",
        "40",
    ])
    .unwrap();
    assert_eq!(
        (c.backlog, c.load, c.stop),
        (Some(500), Load::Rate(5.0), Stop::Count(40))
    );
    assert_eq!(run(&[]).unwrap().backlog, None);
}

#[test]
fn backlog_refuses_zero_other_scenarios_and_closed_loop_naming_the_option() {
    for bad in ["0", "-1", "x", "1.5"] {
        let e = run(&["--scenario", "backlog", "--backlog", bad]).unwrap_err();
        assert!(e.0.starts_with("--backlog:"), "{bad}: {e}");
    }
    for other in ["steady", "max", "fan-out", "slow-receiver"] {
        let e = run(&["--scenario", other, "--backlog", "10"]).unwrap_err();
        assert_eq!(
            e.0, "--backlog applies to --scenario backlog only",
            "{other}"
        );
    }
    let e = run(&["--scenario", "backlog", "--concurrency", "8"]).unwrap_err();
    assert!(e.0.contains("open loop"), "{e}");
    assert!(run(&["--scenario", "backlog", "--slow-share", "0.1"]).is_err());
    assert!(USAGE.contains("--backlog N"));
}

#[test]
fn contradictions_and_bad_values_are_refused() {
    assert!(run(&["--rate", "5", "--concurrency", "2", "--scenario", "fan-out"]).is_err());
    assert!(run(&["--scenario", "max", "--rate", "5"]).is_err());
    assert!(run(&["--concurrency", "5"]).is_err());
    assert!(run(&["--duration", "5s", "--count", "5"]).is_err());
    assert!(run(&["--rate", "0"]).is_err());
    assert!(run(&["--duration", "5"]).is_err());
    assert!(run(&["--retailers-per-cart", "3"]).is_err());
    assert!(run(&["--gateway", "https://x"]).is_err());
    assert!(run(&["--pids", "gateway"]).is_err());
    assert!(run(&["--bogus"]).is_err());
    assert!(run(&["--json"]).unwrap_err().0.contains("needs a value"));
}

#[test]
fn a_missing_secret_is_named() {
    let e = parse(Vec::<String>::new(), None).unwrap_err();
    assert!(e.0.contains("ICON_JWT_SECRET"));
}

#[test]
fn pids_durations_and_help() {
    let c = run(&[
        "--pids",
        "gateway=1,postgres=2,postgres=3",
        "--settle",
        "250ms",
    ])
    .unwrap();
    assert_eq!(
        c.pids.unwrap(),
        vec![
            ("gateway".into(), 1),
            ("postgres".into(), 2),
            ("postgres".into(), 3)
        ]
    );
    assert_eq!(c.settle, Duration::from_millis(250));
    assert_eq!(duration_arg("x", "2m").unwrap(), Duration::from_secs(120));
    assert!(matches!(
        parse(["--help".to_string()], None),
        Ok(Parsed::Help)
    ));
}

#[test]
fn slow_receiver_is_open_loop_with_a_tenth_slow_by_default() {
    let c = run(&["--scenario", "slow-receiver", "--rate", "5"]).unwrap();
    assert_eq!(c.scenario, Scenario::SlowReceiver);
    assert_eq!(c.load, Load::Rate(5.0));
    assert_eq!(c.slow_share.unwrap().as_f64(), 0.1);
    let c = run(&["--scenario", "slow-receiver", "--slow-share=0.25"]).unwrap();
    assert_eq!(c.slow_share, SlowShare::new(0.25));
    assert_eq!(run(&[]).unwrap().slow_share, None);
    assert!(run(&["--scenario", "slow-receiver", "--concurrency", "4"]).is_err());
    assert!(run(&["--slow-share", "0.1"]).is_err());
    for bad in ["0", "1", "-0.1", "1.5", "NaN", "x"] {
        assert!(
            run(&["--scenario", "slow-receiver", "--slow-share", bad]).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn the_slow_pick_is_every_nth_and_holds_the_share() {
    let tenth = SlowShare::new(0.1).unwrap();
    let picked: Vec<u64> = (0..40).filter(|&i| tenth.picks(i)).collect();
    assert_eq!(picked, vec![9, 19, 29, 39]);
    let third = SlowShare::new(0.3).unwrap();
    for n in [10u64, 100, 1000, 1001] {
        let slow = (0..n).filter(|&i| third.picks(i)).count() as u64;
        assert_eq!(slow, n * 3 / 10, "first {n}");
    }
}

#[test]
fn database_url_is_parsed_at_the_edge() {
    let c = run(&["--database-url", "postgres://postgres@127.0.0.1:5432/icon"]).unwrap();
    assert_eq!(c.database.unwrap().get_dbname(), Some("icon"));
    assert!(run(&[]).unwrap().database.is_none());
    assert!(run(&["--database-url", "mysql://x/y"]).is_err());
    assert!(run(&["--database-url", "icon"]).is_err());
}

#[test]
fn stages_listen_on_loopback_only_and_take_a_share() {
    assert_eq!(run(&[]).unwrap().stages, None);
    let c = run(&["--stages"]).unwrap().stages.unwrap();
    assert_eq!(c.listen, "127.0.0.1:4318".parse().unwrap());
    assert_eq!(c.share, TraceShare::ALL);
    // --otlp-listen alone turns them on.
    let c = run(&["--otlp-listen=[::1]:0", "--stages-share", "0.1"])
        .unwrap()
        .stages
        .unwrap();
    assert_eq!(c.listen, "[::1]:0".parse().unwrap());
    assert_eq!(c.share, TraceShare::new(0.1).unwrap());
    for bad in ["0.0.0.0:4318", "192.168.1.2:4318", "localhost:4318", "4318"] {
        let e = run(&["--otlp-listen", bad]).unwrap_err();
        assert!(e.to_string().starts_with("--otlp-listen: "), "{bad}: {e}");
    }
    for bad in ["0", "1.5", "x"] {
        assert!(run(&["--stages", "--stages-share", bad]).is_err(), "{bad}");
    }
    assert_eq!(
        run(&["--stages-share", "0.5"]).unwrap_err().to_string(),
        "--stages-share needs --stages"
    );
}
