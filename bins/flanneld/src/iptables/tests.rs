//! iptables tests; each runs in a network namespace of its own.

use std::time::Duration;

use super::*;
use crate::testing::TestNetns;

fn network() -> ipnet::Ipv4Net {
    "10.2.0.0/16".parse().unwrap()
}

fn lease() -> ipnet::Ipv4Net {
    "10.2.100.0/24".parse().unwrap()
}

fn chain_rules(netns: &TestNetns, table: &str, chain: &str) -> Vec<String> {
    netns
        .run_ok("iptables", &["-t", table, "-S", chain])
        .lines()
        .filter(|line| line.starts_with("-A "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn install_masq_in_order() {
    let netns = TestNetns::new("ipt");
    let iptables = Iptables::with_command(netns.prefix("iptables"));
    let random_fully = iptables.supports_random_fully().await;
    assert!(
        random_fully,
        "iptables 1.6.2 and later support --random-fully"
    );

    // A rule of someone else's that must survive.
    netns.run_ok(
        "iptables",
        &[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            "192.0.2.0/24",
            "-j",
            "MASQUERADE",
        ],
    );

    let spec = rules::masq(network(), lease(), random_fully);
    let mut installed = iptables.install(&spec).await.unwrap();
    assert_eq!(
        installed.listing,
        chain_rules(&netns, "nat", "FLANNEL-POSTRTG")
    );

    let rules = chain_rules(&netns, "nat", "FLANNEL-POSTRTG");
    assert_eq!(rules.len(), 5, "{rules:#?}");
    assert!(
        rules[0].starts_with("-A FLANNEL-POSTRTG -s 10.2.100.0/24 -d 10.2.0.0/16"),
        "{}",
        rules[0]
    );
    assert!(rules[0].ends_with("-j RETURN"), "{}", rules[0]);
    assert!(
        rules[1].starts_with("-A FLANNEL-POSTRTG -s 10.2.0.0/16 -d 10.2.100.0/24"),
        "{}",
        rules[1]
    );
    assert!(
        rules[2].starts_with("-A FLANNEL-POSTRTG ! -s 10.2.0.0/16 -d 10.2.100.0/24"),
        "{}",
        rules[2]
    );
    assert!(
        rules[3].starts_with("-A FLANNEL-POSTRTG -s 10.2.0.0/16 ! -d 224.0.0.0/4"),
        "{}",
        rules[3]
    );
    assert!(
        rules[3].ends_with("-j MASQUERADE --random-fully"),
        "{}",
        rules[3]
    );
    assert!(
        rules[4].starts_with("-A FLANNEL-POSTRTG ! -s 10.2.0.0/16 -d 10.2.0.0/16"),
        "{}",
        rules[4]
    );

    let postrouting = chain_rules(&netns, "nat", "POSTROUTING");
    assert_eq!(postrouting.len(), 2, "{postrouting:#?}");
    assert!(
        postrouting[0].ends_with("-j FLANNEL-POSTRTG"),
        "jump first: {postrouting:#?}"
    );
    assert!(postrouting[1].contains("192.0.2.0/24"), "{postrouting:#?}");

    // Installing again replaces, never doubles.
    iptables.install(&spec).await.unwrap();
    assert_eq!(chain_rules(&netns, "nat", "FLANNEL-POSTRTG").len(), 5);
    assert_eq!(chain_rules(&netns, "nat", "POSTROUTING").len(), 2);
    assert_eq!(
        iptables.check(&mut installed).await.unwrap(),
        Checked::Intact
    );
}

#[tokio::test]
async fn check_restores_flushed_rules() {
    let netns = TestNetns::new("ipt");
    let iptables = Iptables::with_command(netns.prefix("iptables"));
    let mut masq = iptables
        .install(&rules::masq(network(), lease(), false))
        .await
        .unwrap();
    let mut forward = iptables.install(&rules::forward(network())).await.unwrap();
    let masq_listing = masq.listing.clone();

    netns.run_ok("iptables", &["-t", "nat", "-F", "FLANNEL-POSTRTG"]);
    assert_eq!(iptables.check(&mut masq).await.unwrap(), Checked::Restored);
    assert_eq!(chain_rules(&netns, "nat", "FLANNEL-POSTRTG").len(), 5);

    netns.run_ok("iptables", &["-t", "nat", "-F", "POSTROUTING"]);
    assert_eq!(iptables.check(&mut masq).await.unwrap(), Checked::Restored);
    assert_eq!(chain_rules(&netns, "nat", "POSTROUTING").len(), 1);

    netns.run_ok("iptables", &["-F", "FORWARD"]);
    assert_eq!(
        iptables.check(&mut forward).await.unwrap(),
        Checked::Restored
    );
    let forward_rules = chain_rules(&netns, "filter", "FORWARD");
    assert_eq!(forward_rules.len(), 1);
    assert!(
        forward_rules[0].ends_with("-j FLANNEL-FWD"),
        "{forward_rules:#?}"
    );

    // One rule deleted from the middle.
    netns.run_ok("iptables", &["-t", "nat", "-D", "FLANNEL-POSTRTG", "3"]);
    assert_eq!(iptables.check(&mut masq).await.unwrap(), Checked::Restored);
    assert_eq!(chain_rules(&netns, "nat", "FLANNEL-POSTRTG"), masq_listing);
    assert_eq!(iptables.check(&mut masq).await.unwrap(), Checked::Intact);

    // The first rule moved to the end: all rules present, order wrong.
    netns.run_ok("iptables", &["-t", "nat", "-D", "FLANNEL-POSTRTG", "1"]);
    netns.run_ok(
        "iptables",
        &[
            "-t",
            "nat",
            "-A",
            "FLANNEL-POSTRTG",
            "-s",
            "10.2.100.0/24",
            "-d",
            "10.2.0.0/16",
            "-m",
            "comment",
            "--comment",
            "flanneld masq",
            "-j",
            "RETURN",
        ],
    );
    assert_eq!(chain_rules(&netns, "nat", "FLANNEL-POSTRTG").len(), 5);
    assert_ne!(chain_rules(&netns, "nat", "FLANNEL-POSTRTG"), masq_listing);
    assert_eq!(iptables.check(&mut masq).await.unwrap(), Checked::Restored);
    assert_eq!(chain_rules(&netns, "nat", "FLANNEL-POSTRTG"), masq_listing);

    // A foreign rule added to our chain is removed with the refill.
    netns.run_ok(
        "iptables",
        &[
            "-t",
            "nat",
            "-A",
            "FLANNEL-POSTRTG",
            "-s",
            "192.0.2.0/24",
            "-j",
            "RETURN",
        ],
    );
    assert_eq!(iptables.check(&mut masq).await.unwrap(), Checked::Restored);
    assert_eq!(chain_rules(&netns, "nat", "FLANNEL-POSTRTG"), masq_listing);
}

#[tokio::test]
async fn forward_jump_appended() {
    let netns = TestNetns::new("ipt");
    netns.run_ok("iptables", &["-P", "FORWARD", "DROP"]);
    netns.run_ok(
        "iptables",
        &["-A", "FORWARD", "-i", "docker0", "-j", "ACCEPT"],
    );
    let iptables = Iptables::with_command(netns.prefix("iptables"));
    iptables.install(&rules::forward(network())).await.unwrap();

    let forward = chain_rules(&netns, "filter", "FORWARD");
    assert_eq!(forward.len(), 2, "{forward:#?}");
    assert!(forward[0].contains("docker0"), "{forward:#?}");
    assert!(forward[1].ends_with("-j FLANNEL-FWD"), "{forward:#?}");
    let ours = chain_rules(&netns, "filter", "FLANNEL-FWD");
    assert_eq!(ours.len(), 2);
    assert!(
        ours[0].starts_with("-A FLANNEL-FWD -s 10.2.0.0/16"),
        "{ours:#?}"
    );
    assert!(
        ours[1].starts_with("-A FLANNEL-FWD -d 10.2.0.0/16"),
        "{ours:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_follows_lease_change_and_flushes() {
    let netns = TestNetns::new("ipt");
    let iptables = Iptables::with_command(netns.prefix("iptables"));
    let (sender, receiver) = watch::channel(vec![rules::masq(network(), lease(), false)]);
    let task = tokio::spawn(keep(iptables, receiver, Duration::from_millis(200), None));

    // Listing fails until the task has created the chain.
    let current = || {
        let output = netns.run("iptables", &["-t", "nat", "-S", "FLANNEL-POSTRTG"]);
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| line.starts_with("-A "))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let wait_for = |predicate: &dyn Fn(&[String]) -> bool| {
        for _ in 0..50 {
            if predicate(&current()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("rules never matched: {:#?}", current());
    };
    wait_for(&|rules| rules.len() == 5 && rules[0].contains("10.2.100.0/24"));

    netns.run_ok("iptables", &["-t", "nat", "-F", "FLANNEL-POSTRTG"]);
    wait_for(&|rules| rules.len() == 5);

    sender
        .send(vec![rules::masq(
            network(),
            "10.2.7.0/24".parse().unwrap(),
            false,
        )])
        .unwrap();
    wait_for(&|rules| rules.len() == 5 && rules[0].contains("10.2.7.0/24"));

    drop(sender);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn missing_program_reported() {
    let iptables = Iptables::with_command(vec!["/nonexistent/iptables".into()]);
    let err = iptables
        .install(&rules::forward(network()))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("running /nonexistent/iptables failed: "),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with("is iptables installed (apt-get install iptables)?"),
        "{err}"
    );
}

#[tokio::test]
async fn failed_command_reported() {
    let netns = TestNetns::new("ipt");
    let iptables = Iptables::with_command(netns.prefix("iptables"));
    let mut spec = rules::forward(network());
    spec.rules.push(vec!["-j".into(), "NO-SUCH-TARGET".into()]);
    let err = iptables.install(&spec).await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "`ip netns exec {} iptables -w 5 -t filter -A FLANNEL-FWD -j NO-SUCH-TARGET` failed (exit status: ",
            netns.name
        )),
        "{message}"
    );
}
