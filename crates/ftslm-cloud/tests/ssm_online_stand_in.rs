//! The SSM-agent check against a stand-in for Systems Manager's
//! `DescribeInstanceInformation`, the one API of the instance lifecycle that
//! moto lacks (it answers 500). The stand-in is a loopback HTTP server that
//! speaks the same AWS JSON 1.1 protocol: it checks the operation in
//! `X-Amz-Target`, records the request body, and answers each call with the
//! `InstanceInformationList` the test scripts for that call.

mod common;

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::sdk_config;
use ftslm_cloud::aws::{Aws, AwsError};
use ftslm_cloud::instance::{ssm_agent, wait_for_ssm_online, SsmAgent};
use serde_json::{json, Value};

const REGION: &str = "us-east-1";
const INSTANCE: &str = "i-0a1b2c3d4e5f67890";
const TARGET: &str = "AmazonSSM.DescribeInstanceInformation";

/// The body of the n-th call's answer (0-based), as the real API shapes it.
type Script = dyn Fn(usize) -> Value + Send + Sync;

struct StandIn {
    endpoint: String,
    /// The JSON body of each DescribeInstanceInformation request, in order.
    requests: Arc<Mutex<Vec<Value>>>,
}

impl StandIn {
    fn start(script: impl Fn(usize) -> Value + Send + Sync + 'static) -> StandIn {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let seen = Arc::clone(&requests);
        // Left running when the test ends: the process exits with it.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (seen, script) = (Arc::clone(&seen), Arc::clone(&script));
                std::thread::spawn(move || serve(stream, &seen, &*script));
            }
        });
        StandIn { endpoint, requests }
    }

    fn aws(&self) -> Aws {
        Aws::from_sdk_config(sdk_config(&self.endpoint, REGION))
            .unwrap()
            .with_poll_interval(Duration::from_millis(20))
    }

    fn calls(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

/// Answers the requests of one keep-alive connection until the client closes it.
fn serve(stream: TcpStream, seen: &Mutex<Vec<Value>>, script: &Script) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut target = None;
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            match name.trim().to_ascii_lowercase().as_str() {
                "x-amz-target" => target = Some(value.trim().to_string()),
                "content-length" => length = value.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, answer) =
            if request_line.starts_with("POST ") && target.as_deref() == Some(TARGET) {
                let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let call = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(request);
                    seen.len() - 1
                };
                ("200 OK", script(call))
            } else {
                (
                    "400 Bad Request",
                    json!({
                        "__type": "UnknownOperationException",
                        "message": format!("the stand-in serves only {TARGET}, not {target:?}"),
                    }),
                )
            };
        let body = answer.to_string();
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.1\r\n\
             x-amzn-RequestId: 00000000-0000-0000-0000-000000000000\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// One entry of `InstanceInformationList`, with the fields the real API sends.
fn information(ping_status: &str) -> Value {
    json!({
        "InstanceId": INSTANCE,
        "PingStatus": ping_status,
        "LastPingDateTime": 1.7646e9,
        "AgentVersion": "3.3.1142.0",
        "IsLatestVersion": false,
        "PlatformType": "Linux",
        "PlatformName": "Ubuntu",
        "PlatformVersion": "22.04",
        "ResourceType": "EC2Instance",
        "IPAddress": "172.31.5.6",
        "ComputerName": "ip-172-31-5-6.ec2.internal",
    })
}

fn answer(list: Vec<Value>) -> Value {
    json!({ "InstanceInformationList": list })
}

/// Progress lines, collected.
#[derive(Default)]
struct Lines(RefCell<Vec<String>>);

impl Lines {
    fn sink(&self) -> impl Fn(&str) + '_ {
        |line: &str| self.0.borrow_mut().push(line.to_string())
    }
}

#[test]
fn describe_instance_information_stand_in_online_agent_is_online() {
    let server = StandIn::start(|_| answer(vec![information("Online")]));
    let agent = ssm_agent(&server.aws(), INSTANCE).unwrap();
    assert_eq!(agent, SsmAgent::Online);
    // The query names the instance, so an account with many managed
    // instances answers with just this one.
    let requests = server.requests.lock().unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0]["Filters"],
        json!([{ "Key": "InstanceIds", "Values": [INSTANCE] }])
    );
}

#[test]
fn describe_instance_information_stand_in_connection_lost_agent() {
    let server = StandIn::start(|_| answer(vec![information("ConnectionLost")]));
    assert_eq!(
        ssm_agent(&server.aws(), INSTANCE).unwrap(),
        SsmAgent::ConnectionLost
    );
    let server = StandIn::start(|_| answer(vec![information("Inactive")]));
    assert_eq!(
        ssm_agent(&server.aws(), INSTANCE).unwrap(),
        SsmAgent::Inactive
    );
}

#[test]
fn describe_instance_information_stand_in_empty_list_is_not_registered() {
    let server = StandIn::start(|_| answer(Vec::new()));
    assert_eq!(
        ssm_agent(&server.aws(), INSTANCE).unwrap(),
        SsmAgent::NotRegistered
    );
    assert_eq!(server.calls(), 1);
}

#[test]
fn describe_instance_information_stand_in_wait_sees_the_agent_come_online() {
    // Not registered on the first two polls, as right after a start.
    let server = StandIn::start(|call| {
        if call < 2 {
            answer(Vec::new())
        } else {
            answer(vec![information("Online")])
        }
    });
    let lines = Lines::default();
    let agent = wait_for_ssm_online(
        &server.aws(),
        INSTANCE,
        Duration::from_secs(10),
        &lines.sink(),
    )
    .unwrap();
    assert_eq!(agent, SsmAgent::Online);
    assert_eq!(server.calls(), 3);
    // One line per change, not per poll.
    assert_eq!(
        lines.0.borrow().clone(),
        vec![
            format!("SSM agent of {INSTANCE}: NotRegistered"),
            format!("SSM agent of {INSTANCE}: Online"),
        ]
    );
}

#[test]
fn describe_instance_information_stand_in_wait_times_out_saying_what_is_missing() {
    let server = StandIn::start(|_| answer(vec![information("ConnectionLost")]));
    let limit = Duration::from_millis(300);
    let error = wait_for_ssm_online(&server.aws(), INSTANCE, limit, &|_| {}).unwrap_err();
    match &error {
        AwsError::Timeout { what, waited } => {
            assert!(what.contains(INSTANCE), "{what}");
            assert!(what.contains("Online"), "{what}");
            assert!(what.contains("last seen: ConnectionLost"), "{what}");
            assert!(what.contains("AmazonSSMManagedInstanceCore"), "{what}");
            assert!(*waited >= limit, "{waited:?}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    // It polled, more than once, and stopped at the limit.
    let calls = server.calls();
    assert!(calls >= 2, "{calls}");
    assert!(calls < 1000, "{calls}");
}
