//! `scale-out`: the bookings service in one and then two processes (replicas), beside one
//! process of the events, users and notifications services, on the storage the environment
//! names (`MYEVENTS_STORAGE_URL`) and the broker `--broker` names (bench/scale-out.sh gives a
//! fresh PostgreSQL database and RabbitMQ). The clients' connections are spread over the
//! bookings replicas as a load balancer would spread them, without a balancer's own CPU on
//! the machine. Two sales per replica count:
//! - `hot`: every client books one event;
//! - `spread`: the bookings go round robin over `--events` events (1,000 by default).
//!
//! Then the oversell checks: for each hot event, and over all the spread events, the seats
//! the clients were told are the seats taken and the seats the events service counts as sold.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use hyper::{Method, StatusCode};
use serde_json::json;

use crate::{
    Args, CAPACITY, Processes, Server, admin_token, bookable, bookings_across, bookings_of, call,
    check_no_oversell, connect, create_event, hot_event, load_on, report,
};

/// `count` events in one new location, made by 8 connections at once; once the bookings
/// service at `bookings` knows every one.
async fn many_events(
    events: &str,
    bookings: &str,
    token: &str,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let (status, location) = call(
        events,
        Method::POST,
        "/locations",
        Some(token),
        Some(json!({"Name": "Everywhere", "Halls": [{"name": "Main", "capacity": CAPACITY}]})),
    )
    .await?;
    if status != StatusCode::CREATED {
        bail!("cannot create the location: {status} {location}");
    }
    let location = location["ID"].as_str().context("location ID")?.to_owned();
    let mut makers = Vec::new();
    for c in 0..8 {
        let mut sender = connect(events).await?;
        let (token, location) = (token.to_owned(), location.clone());
        makers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in (c..count).step_by(8) {
                ids.push(create_event(&mut sender, &token, &location, n).await?.0);
            }
            anyhow::Ok(ids)
        }));
    }
    let mut ids = Vec::with_capacity(count);
    for maker in makers {
        ids.extend(maker.await??);
    }
    let mut reader = connect(bookings).await?;
    for event in &ids {
        let mut waited = 0;
        while !bookable(&mut reader, event).await? {
            waited += 1;
            if waited > 30_000 {
                bail!("event {event} did not become bookable within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    Ok(ids)
}

pub async fn scale_out(binary: &Path, scratch: &Path, args: &Args) -> anyhow::Result<()> {
    let processes = Processes::new(args, scratch);
    println!(
        "scale-out: storage {}, broker {}",
        std::env::var("MYEVENTS_STORAGE_URL").unwrap_or_else(|_| "embedded (SQLite)".into()),
        processes.broker
    );
    let front = processes
        .start(binary, &scratch.join("front"), "events,users,notifications")
        .await?;
    let mut replicas: Vec<Server> = Vec::new();
    let token = admin_token(&front.addr).await?;
    let mut spread: Option<Vec<String>> = None;
    let (mut spread_seats, mut spread_refused) = (0, 0);
    for count in 1..=args.replicas {
        let data_dir = scratch.join(format!("bookings-{count}"));
        replicas.push(processes.start(binary, &data_dir, "bookings").await?);
        let addrs: Vec<String> = replicas.iter().map(|r| r.addr.clone()).collect();
        let first = addrs[0].as_str();

        let hot = hot_event(&front.addr, first, &token).await?;
        let (tally, elapsed) = load_on(
            &addrs,
            args.clients,
            args.seconds,
            StatusCode::CREATED,
            bookings_of(&hot, args.clients),
        )
        .await?;
        report(&format!("hot/{count}r"), &tally, elapsed);
        let hot = [hot];
        check_no_oversell(first, &front.addr, &token, &hot, tally.seats, tally.other).await?;

        if spread.is_none() {
            spread =
                Some(many_events(&front.addr, first, &token, args.events.unwrap_or(1000)).await?);
        }
        let events = spread.as_deref().expect("made above");
        let (tally, elapsed) = load_on(
            &addrs,
            args.clients,
            args.seconds,
            StatusCode::CREATED,
            bookings_across(events, args.clients),
        )
        .await?;
        report(&format!("spread/{count}r"), &tally, elapsed);
        spread_seats += tally.seats;
        spread_refused += tally.other;
        let (confirmed, refused) = (spread_seats, spread_refused);
        check_no_oversell(first, &front.addr, &token, events, confirmed, refused).await?;
    }
    Ok(())
}
