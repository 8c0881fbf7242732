//! Calls that succeed, fail in the application, or fail in transport.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use rmif_core::{
    Client, Compression, CompressionPolicy, Error, ProviderConfig, Serialization, Server,
    ServiceKey,
};

use crate::support::*;

/// Application code written against the trait, oblivious to where the implementation runs.
async fn exercise(calc: &impl Calculator) -> Vec<String> {
    let mut seen = Vec::new();
    seen.push(format!("{:?}", calc.add(40, 2).await));
    seen.push(format!("{:?}", calc.div(9, 3).await));
    seen.push(format!("{:?}", calc.div(1, 0).await));
    seen.push(format!("{:?}", calc.echo(b"hello".to_vec()).await));
    seen.push(format!("{:?}", calc.nothing().await));
    let items: Vec<_> = calc.count(4, Some(3)).await.unwrap().collect().await;
    seen.push(format!("{items:?}"));
    seen.push(format!("{:?}", calc.count(0, None).await.map(|_| ())));
    seen
}

#[tokio::test]
async fn same_code_runs_against_local_and_remote_implementations() {
    let (server, _) = start_provider(ProviderConfig::loopback()).await;
    let local_results = exercise(&LocalCalculator::default()).await;
    let remote_results = exercise(&consumer(&[&server])).await;
    assert_eq!(local_results, remote_results);
    assert!(
        local_results[2].contains("DivisionByZero"),
        "{local_results:?}"
    );

    // Behind the one type that stands for any implementation, as a trait object would.
    let either: [DynCalculator; 2] = [
        DynCalculator::new(LocalCalculator::default()),
        DynCalculator::from_arc(Arc::new(consumer(&[&server]))),
    ];
    for calc in &either {
        assert_eq!(exercise(calc).await, local_results);
    }

    // A provider serving that type: here a relay to the first provider.
    let relay = Server::builder(ProviderConfig::loopback())
        .add_service(CalculatorProvider::new(either[1].clone()))
        .serve()
        .await
        .unwrap();
    assert_eq!(exercise(&consumer(&[&relay])).await, local_results);
    relay.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn unary_calls_and_application_errors_cross_the_wire() {
    let (server, _) = start_provider(ProviderConfig::loopback()).await;
    let calc = consumer(&[&server]);
    assert_eq!(calc.add(2, 3).await.unwrap(), 5);
    assert_eq!(calc.div(7, 2).await.unwrap(), 3);
    assert_eq!(calc.div(1, 0).await.unwrap_err(), CalcError::DivisionByZero);
    assert_eq!(calc.echo(vec![1, 2, 3]).await.unwrap(), vec![1, 2, 3]);
    calc.nothing().await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn json_and_lz4_round_trip_large_bodies() {
    let provider_config = ProviderConfig {
        compression: CompressionPolicy {
            algorithm: Compression::Lz4,
            threshold: 512,
        },
        ..ProviderConfig::loopback()
    };
    let (server, _) = start_provider(provider_config).await;
    for serialization in Serialization::ALL {
        let mut config = consumer_config(&[&server]);
        config.serialization = serialization;
        config.compression = CompressionPolicy {
            algorithm: Compression::Lz4,
            threshold: 512,
        };
        let calc: CalculatorConsumer = Client::with_static_providers(config).stub();
        let body: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        assert_eq!(
            calc.echo(body.clone()).await.unwrap(),
            body,
            "{serialization:?}"
        );
        assert_eq!(calc.div(1, 0).await.unwrap_err(), CalcError::DivisionByZero);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn many_concurrent_calls_share_one_connection() {
    let (server, _) = start_provider(ProviderConfig::loopback()).await;
    let calc = Arc::new(consumer(&[&server]));
    let calls = (0..500u64).map(|i| {
        let calc = calc.clone();
        tokio::spawn(async move { calc.add(i, i).await.unwrap() })
    });
    for (i, call) in calls.enumerate() {
        assert_eq!(call.await.unwrap(), 2 * i as u64);
    }
    assert_eq!(server.connections(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_timed_out_call_fails_promptly_and_its_late_answer_is_dropped() {
    let (server, _) = start_provider(ProviderConfig::loopback()).await;
    let calc = consumer(&[&server]);
    // `sleep_ms` has `#[rmif(timeout_ms = 300)]`.
    let err = calc.sleep_ms(60_000).await.unwrap_err();
    assert!(
        matches!(&err, CalcError::Rpc(Error::Timeout { method, timeout_ms: 300, .. }) if method == "sleep_ms"),
        "{err:?}"
    );
    // A per-client override beats the attribute.
    let patient: CalculatorConsumer = rmif_core::Stub::from_service_client(
        calc.service_client()
            .with_timeout("sleep_ms", Duration::from_secs(5)),
    );
    assert_eq!(patient.sleep_ms(400).await.unwrap(), 400);
    // The connection is still in step: answers go to the right calls.
    for i in 0..20 {
        assert_eq!(calc.add(i, 1).await.unwrap(), i + 1);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn the_provider_sees_the_remaining_deadline() {
    let (server, _) = start_provider(ProviderConfig::loopback()).await;
    let calc = consumer(&[&server]);
    let remaining = calc
        .remaining_ms()
        .await
        .unwrap()
        .expect("a deadline reaches the handler");
    assert!(remaining > 0 && remaining <= 9000, "{remaining}");
    assert_eq!(
        LocalCalculator::default().remaining_ms().await.unwrap(),
        None
    );
    server.shutdown().await;
}

#[tokio::test]
async fn dropping_a_call_cancels_its_handler_on_the_provider() {
    let (server, probe) = start_provider(ProviderConfig::loopback()).await;
    let calc = Arc::new(consumer(&[&server]));
    let call = tokio::spawn({
        let calc = calc.clone();
        async move { calc.park().await }
    });
    eventually("the handler started", || {
        probe.parked.load(Ordering::SeqCst) == 1
    })
    .await;
    call.abort();
    eventually("the handler was dropped", || {
        probe.dropped.load(Ordering::SeqCst) == 1
    })
    .await;
    eventually("no call is active", || server.active_calls() == 0).await;
    server.shutdown().await;
}

#[tokio::test]
async fn oneway_calls_run_without_an_answer() {
    let (server, probe) = start_provider(ProviderConfig::loopback()).await;
    let calc = consumer(&[&server]);
    for value in [1, 2, 3] {
        calc.record(value).await.unwrap();
    }
    eventually("all one-way calls ran", || {
        probe.recorded.load(Ordering::SeqCst) == 6
    })
    .await;
    assert_eq!(calc.recorded().await.unwrap(), 6);
    server.shutdown().await;
}

#[tokio::test]
async fn streams_deliver_items_errors_and_refusals_in_order() {
    let (server, _) = start_provider(ProviderConfig::loopback()).await;
    let calc = consumer(&[&server]);
    let items: Vec<_> = calc.count(5, None).await.unwrap().collect().await;
    assert_eq!(items, (1..=5).map(Ok).collect::<Vec<_>>());
    let items: Vec<_> = calc.count(3, Some(2)).await.unwrap().collect().await;
    assert_eq!(items, vec![Ok(1), Err(CalcError::Stopped(2)), Ok(3)]);
    assert_eq!(calc.count(0, None).await.err(), Some(CalcError::Stopped(0)));
    let long: Vec<_> = calc.count(10_000, None).await.unwrap().collect().await;
    assert_eq!(long.len(), 10_000);
    assert!(
        long.iter()
            .enumerate()
            .all(|(i, item)| *item == Ok(i as u32 + 1))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_slow_stream_consumer_bounds_what_the_provider_produces() {
    let (server, probe) = start_provider(ProviderConfig::loopback()).await;
    let calc = consumer(&[&server]);
    let mut stream = calc.count(1_000_000, None).await.unwrap();
    assert_eq!(stream.next().await, Some(Ok(1)));
    eventually("the provider filled the window", || {
        probe.streamed.load(Ordering::SeqCst) >= 64
    })
    .await;
    // Give an unbounded producer every chance to run ahead, then check that it did not.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let produced = probe.streamed.load(Ordering::SeqCst);
    assert!(
        produced <= 64 + 1,
        "provider produced {produced} items for a consumer that took 1"
    );
    // Dropping the stream cancels it on the provider.
    drop(stream);
    eventually("the stream ended on the provider", || {
        server.active_calls() == 0
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_panicking_handler_is_a_remote_error_and_the_provider_keeps_serving() {
    let (server, _) = start_provider(ProviderConfig::loopback()).await;
    let calc = consumer(&[&server]);
    let err = calc.panics().await.unwrap_err();
    assert!(
        matches!(&err, CalcError::Rpc(Error::Remote { reason, .. }) if reason.contains("deliberate panic")),
        "{err:?}"
    );
    assert_eq!(calc.add(1, 1).await.unwrap(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn a_handler_panicking_in_its_own_task_is_a_remote_error_and_the_provider_keeps_serving() {
    let (server, _) = start_provider(ProviderConfig::loopback()).await;
    let calc = consumer(&[&server]);
    let err = calc.panics_later().await.unwrap_err();
    assert!(
        matches!(&err, CalcError::Rpc(Error::Remote { reason, .. }) if reason.contains("deliberate panic after an await")),
        "{err:?}"
    );
    assert_eq!(calc.add(1, 1).await.unwrap(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn over_the_concurrency_limit_calls_are_refused_as_overloaded() {
    let config = ProviderConfig {
        max_concurrent_requests: 2,
        ..ProviderConfig::loopback()
    };
    let (server, probe) = start_provider(config).await;
    let calc = Arc::new(consumer(&[&server]));
    let parked: Vec<_> = (0..2)
        .map(|_| {
            let calc = calc.clone();
            tokio::spawn(async move { calc.park().await })
        })
        .collect();
    eventually("two handlers run", || {
        probe.parked.load(Ordering::SeqCst) == 2
    })
    .await;
    let err = calc.add(1, 2).await.unwrap_err();
    assert!(
        matches!(err, CalcError::Rpc(Error::Overloaded { .. })),
        "{err:?}"
    );
    probe.release.notify_waiters();
    for call in parked {
        call.await.unwrap().unwrap();
    }
    assert_eq!(calc.add(1, 2).await.unwrap(), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn losing_the_connection_fails_in_flight_calls_at_once() {
    let (server, probe) = start_provider(ProviderConfig::loopback()).await;
    let calc = Arc::new(consumer(&[&server]));
    let call = tokio::spawn({
        let calc = calc.clone();
        async move { calc.park().await }
    });
    eventually("the handler started", || {
        probe.parked.load(Ordering::SeqCst) == 1
    })
    .await;
    // No grace: the provider closes the connection with the call still running. The call's
    // own deadline is 9 s away, so a connection error (not a timeout) shows it failed at once.
    let report = server.shutdown_within(Duration::ZERO).await;
    assert!(!report.drained);
    let err = call.await.unwrap().unwrap_err();
    assert!(
        matches!(err, CalcError::Rpc(Error::ConnectionLost { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn graceful_shutdown_drains_in_flight_calls_and_refuses_new_ones() {
    let (server, probe) = start_provider(ProviderConfig::loopback()).await;
    let calc = Arc::new(consumer(&[&server]));
    let call = tokio::spawn({
        let calc = calc.clone();
        async move { calc.park().await }
    });
    eventually("the handler started", || {
        probe.parked.load(Ordering::SeqCst) == 1
    })
    .await;
    let shutdown = tokio::spawn(server.shutdown_within(Duration::from_secs(10)));
    // New calls are refused while the old one drains.
    let refused = loop {
        match calc.add(1, 1).await {
            Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(err) => break err,
        }
    };
    assert!(
        matches!(
            refused,
            CalcError::Rpc(
                Error::ShuttingDown { .. } | Error::Unavailable { .. } | Error::NoProvider { .. }
            )
        ),
        "{refused:?}"
    );
    probe.release.notify_waiters();
    call.await.unwrap().unwrap();
    let report = shutdown.await.unwrap();
    assert!(report.drained, "{report:?}");
    assert_eq!(report.aborted, 0);
}

#[tokio::test]
async fn the_consumer_reconnects_to_a_restarted_provider() {
    let (server, _) = start_provider(ProviderConfig::loopback()).await;
    let addr = server.local_addr();
    let calc = consumer(&[&server]);
    assert_eq!(calc.add(1, 1).await.unwrap(), 2);
    server.shutdown().await;
    let config = ProviderConfig {
        port: addr.port(),
        ..ProviderConfig::loopback()
    };
    let (restarted, _) = start_provider(config).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match calc.add(2, 2).await {
            Ok(4) => break,
            Ok(other) => panic!("wrong answer {other}"),
            Err(err) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "never reconnected: {err:?}"
                );
                assert!(
                    matches!(
                        err,
                        CalcError::Rpc(
                            Error::Unavailable { .. }
                                | Error::NoProvider { .. }
                                | Error::ConnectionLost { .. }
                        )
                    ),
                    "{err:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    restarted.shutdown().await;
}

#[tokio::test]
async fn idempotent_calls_fail_over_to_another_provider() {
    let (first, _) = start_provider(ProviderConfig::loopback()).await;
    let (second, _) = start_provider(ProviderConfig::loopback()).await;
    let calc = Arc::new(consumer(&[&first, &second]));
    for i in 0..20 {
        assert_eq!(calc.add(i, 0).await.unwrap(), i);
    }
    first.shutdown().await;
    // Every call keeps succeeding: refused or unreachable attempts go to the other provider.
    for i in 0..200 {
        assert_eq!(calc.add(i, 1).await.unwrap(), i + 1);
    }
    second.shutdown().await;
}

#[tokio::test]
async fn an_unknown_service_is_a_clear_error() {
    let (server, _) = start_provider(ProviderConfig::loopback()).await;
    let client = Client::with_static_providers(consumer_config(&[&server]));
    let stranger: CalculatorConsumer =
        client.stub_with_key(ServiceKey::new("test.Calculator").with_version("9.9"));
    let err = stranger.add(1, 1).await.unwrap_err();
    match err {
        CalcError::Rpc(Error::UnknownService { service, .. }) => {
            assert_eq!(service, "test.Calculator:9.9")
        }
        other => panic!("{other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn idle_connections_stay_up_on_heartbeats() {
    let config = ProviderConfig {
        tick: Duration::from_millis(30),
        again: 3,
        ..ProviderConfig::loopback()
    };
    let (server, _) = start_provider(config).await;
    let mut consumer_config = consumer_config(&[&server]);
    consumer_config.tick = Duration::from_millis(30);
    let calc: CalculatorConsumer = Client::with_static_providers(consumer_config).stub();
    assert_eq!(calc.add(1, 1).await.unwrap(), 2);
    // Ten heartbeat intervals of silence from the application.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calc.add(2, 2).await.unwrap(), 4);
    assert_eq!(
        server.connections(),
        1,
        "the idle connection was kept, not replaced"
    );
    server.shutdown().await;
}
