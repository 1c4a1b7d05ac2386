//! The text `alloy stat` prints without `--json` (the JSON is the
//! library's [`RingStat`] serialized with serde, feature `serde`).

use alloy_shm::ring::RingStat;

/// The human-readable form `alloy stat` prints without `--json`.
pub fn render(st: &RingStat) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let rate = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.1}/s"));
    let name = if st.name.is_empty() {
        "(anonymous)"
    } else {
        &st.name
    };
    let _ = writeln!(
        s,
        "ring {name}: layout v{}, {} slots x {} bytes ({} bytes total)",
        st.version, st.slot_count, st.slot_size, st.total_size
    );
    let producer = match (st.producer_pid, st.producer_alive) {
        (0, _) => "none".to_string(),
        (pid, true) => format!("pid {pid} (alive)"),
        (pid, false) => format!("pid {pid} (DEAD)"),
    };
    let _ = writeln!(
        s,
        "producer: {producer}, published {}{}, {}",
        st.published,
        if st.closed { " (closed)" } else { "" },
        rate(st.messages_per_s)
    );
    let _ = writeln!(
        s,
        "fill: {}/{} slots in use ({:.0}%)",
        st.slots_in_use,
        st.slot_count,
        st.fill * 100.0
    );
    let (parks, park_ns, space_wakes) = st
        .consumers
        .iter()
        .flat_map(|c| &c.members)
        .fold((0, 0, 0), |(p, n, w), m| {
            (p + m.parks, n + m.park_ns, w + m.space_wakes)
        });
    let _ = writeln!(
        s,
        "counters: wakes {} (producer) + {space_wakes} (consumers), parks {parks} ({:.1} ms), \
         back-pressure waits {} ({:.1} ms), full refusals {}, reclaims {}, consumers lost {}",
        st.data_wakes,
        park_ns as f64 / 1e6,
        st.backpressure_waits,
        st.backpressure_ns as f64 / 1e6,
        st.full_refusals,
        st.reclaims,
        st.consumers_lost
    );
    let _ = writeln!(
        s,
        "consumers: {} of {} entries",
        st.consumers.len(),
        st.max_subscribers
    );
    if !st.consumers.is_empty() {
        let _ = writeln!(
            s,
            "  {:>3} {:<9} {:>5} {:<7} {:<14} {:>10} {:>8} {:>6} {:>10}",
            "#", "kind", "group", "state", "pids", "cursor", "lag", "leases", "rate"
        );
    }
    for c in &st.consumers {
        let pids = if c.members.is_empty() {
            format!("({})", c.owner_pid)
        } else {
            c.members
                .iter()
                .map(|m| {
                    // `!` dead, `?` alive but stalled (LAYOUT.md §11.1).
                    let mark = match (m.alive, m.stalled) {
                        (false, _) => "!",
                        (true, true) => "?",
                        (true, false) => "",
                    };
                    format!("{}{mark}", m.pid)
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        let st = if c.alive { c.state } else { "DEAD" };
        let _ = writeln!(
            s,
            "  {:>3} {:<9} {:>5} {:<7} {:<14} {:>10} {:>8} {:>6} {:>10}",
            c.index,
            c.kind,
            c.group,
            st,
            pids,
            c.cursor,
            c.lag,
            c.leases_held,
            rate(c.consumed_per_s)
        );
    }
    s
}
