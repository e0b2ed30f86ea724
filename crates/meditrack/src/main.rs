//! `meditrack`: the healthcare interoperability hub, one binary for every role.

use clap::{Parser, Subcommand};
use meditrack::{Config, config::LogFormat};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc rather than the C library's allocator: a profile of the hub under POST load put
/// a fifth of its CPU in glibc's malloc and free (chunk coalescing among them), spread over
/// HTTP, JSON, the drivers and the event path, with no one caller to fix. Alternating runs
/// on SQLite: GET and POST 10-13 % faster, HL7 batches 9-17 %; see bench/README.md.
/// Transparent huge pages are turned off for the process ([`main`]).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// MediTrack: patient records, lab orders and results, claims and prescriptions, exchanged
/// as REST, HL7 v2, X12 and NCPDP, with every change published as an event.
///
/// Configuration comes from defaults, then meditrack.toml (or --config), then environment:
/// MEDITRACK_LISTEN (127.0.0.1:8080), MEDITRACK_DATA_DIR (./data), MEDITRACK_DATABASE_URL
/// (unset: embedded SQLite; postgres://… for PostgreSQL), MEDITRACK_KAFKA_BROKERS (unset:
/// embedded event log; host:port,… for Kafka), MEDITRACK_LOG_FORMAT (json|text),
/// MEDITRACK_LOG_LEVEL (info), MEDITRACK_DEFAULT_TENANT (default), MEDITRACK_MAX_BODY_BYTES
/// (1048576), MEDITRACK_DB_MAX_CONNECTIONS (10), MEDITRACK_SERVICES (unset: all in one process),
/// MEDITRACK_PATIENT_URL (http://127.0.0.1:8081, for the gateway), MEDITRACK_PUBLIC_URL (http://
/// and the listen address: the built-in issuer's URL), MEDITRACK_OIDC_ISSUER (unset: the
/// built-in issuer; a Keycloak realm URL otherwise), MEDITRACK_OIDC_AUDIENCE (meditrack-api),
/// MEDITRACK_OIDC_JWKS_URL (unset: from the issuer's discovery document).
#[derive(Debug, Parser)]
#[command(name = "meditrack", version)]
struct Cli {
    /// Configuration file (TOML, same keys as the MEDITRACK_* variables in lower case).
    #[arg(long, global = true, env = "MEDITRACK_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the hub: every service in one process, the API on --listen.
    ///
    /// With no configuration the data lives in embedded SQLite files under ./data and nothing
    /// else is needed. Settings: MEDITRACK_LISTEN, MEDITRACK_DATA_DIR, MEDITRACK_DATABASE_URL,
    /// MEDITRACK_KAFKA_BROKERS, MEDITRACK_LOG_FORMAT, MEDITRACK_LOG_LEVEL, MEDITRACK_DEFAULT_TENANT,
    /// MEDITRACK_MAX_BODY_BYTES, MEDITRACK_DB_MAX_CONNECTIONS (see `meditrack --help`).
    /// Stops gracefully on SIGTERM or Ctrl-C.
    Serve {
        /// Address to listen on (overrides MEDITRACK_LISTEN).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Run only these services, one process each (split mode): `patient` (port 8081 by
        /// default) or `gateway` (8080, routes to MEDITRACK_PATIENT_URL). Unset: everything
        /// in one process.
        #[arg(long, env = "MEDITRACK_SERVICES")]
        services: Option<String>,
    },
    /// Create or upgrade every service's database, then exit.
    Migrate,
    /// Print the effective configuration (passwords hidden), then exit.
    Config,
    /// Operate the event backbone: the dead-letter queue and consumer positions.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Accounts of the built-in token issuer (unused when MEDITRACK_OIDC_ISSUER is set).
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Fill the hub's database with synthetic patients and medical records, for benchmarks
    /// and demos: deterministic from --seed, in bulk batches, with a progress readout.
    Seed {
        /// How many patients.
        #[arg(long)]
        patients: u64,
        /// Medical records per patient.
        #[arg(long, default_value_t = 2)]
        records_per_patient: u32,
        /// The same seed makes the same data.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// The tenant to fill (default: MEDITRACK_DEFAULT_TENANT).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Benchmark a hub: starts one (on SQLite, or on a fresh database of the PostgreSQL
    /// server MEDITRACK_DATABASE_URL names), seeds it, drives each scenario at a fixed
    /// offered rate, and writes JSON and Markdown reports (see bench/README.md).
    Bench {
        /// Patients seeded first.
        #[arg(long, default_value_t = 10_000)]
        patients: u64,
        /// Seconds measured per scenario.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Seconds of warm-up per scenario, not measured.
        #[arg(long, default_value_t = 2)]
        warmup: u64,
        /// Requests per second offered in every scenario (default: each scenario's own).
        #[arg(long)]
        rate: Option<f64>,
        /// Only these scenarios and phases, comma-separated (get-patient, post-patient,
        /// search-name, search-mrn, timeline, add-record, lab-order, lab-results,
        /// get-results, lab-pending; capacity, hl7, scaling, peer).
        #[arg(long, value_delimiter = ',')]
        scenarios: Vec<String>,
        /// Where the reports go.
        #[arg(long, default_value = "bench/results")]
        out: PathBuf,
        /// Workers of each closed-loop capacity run.
        #[arg(long, default_value_t = 32)]
        workers: usize,
        /// MLLP connections of the several-connection HL7 run.
        #[arg(long, default_value_t = 4)]
        hl7_connections: usize,
        /// Rounds of GET patient and its ceilings, and of search on the two hubs of the
        /// scaling, measured alternately; each ratio is of the rounds' medians.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
        rounds: u16,
        /// Also seed a second hub with this many patients and compare search p95 there.
        #[arg(long)]
        scale_patients: Option<u64>,
        /// Measure this running hub instead of starting one. It must hold `meditrack seed
        /// --patients <PATIENTS> --seed <SEED>`, and the bench must run with its
        /// configuration (its requests are signed with the hub's key).
        #[arg(long)]
        url: Option<String>,
        /// With --url: the hub's MLLP listener (host:port); without it HL7 is skipped.
        #[arg(long, requires = "url")]
        hl7: Option<String>,
        /// With --url: the seed the hub was seeded with.
        #[arg(long, default_value_t = 42, requires = "url")]
        seed: u64,
        /// Also measure this other FHIR server (its base URL, e.g. http://127.0.0.1:8090)
        /// beside the hub in alternating rounds: it is given as many patients through its
        /// own API first (at most 20,000).
        #[arg(long)]
        fhir_peer: Option<String>,
        /// Log each hub the bench starts at this filter (for instance
        /// `warn,sqlx::query=debug`: every pooled statement with its elapsed time) into
        /// `hub-<name>.log` beside the reports, to name what a slow phase spends its time on.
        #[arg(long, conflicts_with = "url")]
        hub_log: Option<String>,
    },
    /// HL7 v2 tools.
    Hl7 {
        #[command(subcommand)]
        command: Hl7Command,
    },
    /// The field-encryption keyring (SSNs and notes are sealed at rest with it).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Log in to a running hub's built-in issuer and print an access token, for curl:
    /// `export TOKEN=$(meditrack login --username dr.demo --password-stdin < pw.txt)`.
    Login {
        #[arg(long)]
        username: String,
        /// Read the password from the first line of standard input (else you are asked).
        #[arg(long)]
        password_stdin: bool,
        /// The hub (default: MEDITRACK_PUBLIC_URL, or http:// and MEDITRACK_LISTEN).
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Add a user (or, with --service-account, a client for the client-credentials grant).
    /// Without --password-stdin a strong password is generated and printed once.
    Add {
        /// The login name (the client id of a service account).
        #[arg(long)]
        username: String,
        /// A role of 000 §5.1 (HEALTHCARE_ADMIN, DOCTOR, NURSE, LAB_TECHNICIAN, PHARMACIST,
        /// INSURANCE_AGENT, PATIENT) or LAB_SUPERVISOR; repeat or separate with commas.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// The tenant the user works in (default: MEDITRACK_DEFAULT_TENANT).
        #[arg(long)]
        tenant: Option<String>,
        /// For PATIENT users: the id of the patient record they are.
        #[arg(long)]
        patient_id: Option<String>,
        /// For clinicians: their provider id, carried in tokens as `provider_id`.
        #[arg(long)]
        provider_id: Option<String>,
        /// A service account: logs in with the client-credentials grant, gets no refresh token.
        #[arg(long)]
        service_account: bool,
        /// Read the password (or client secret) from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// One line per account: id, name, tenant, kind, roles, and whether it is disabled.
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Disable an account and end its sessions (its refresh tokens are revoked).
    Disable { username: String },
}

#[derive(Debug, Subcommand)]
enum Hl7Command {
    /// Send the messages of a file over MLLP (each MSH starts one; a batch file goes
    /// whole), each after the previous one's ACK, and print the ACKs. Exits non-zero
    /// unless every message was accepted (AA).
    Send {
        file: PathBuf,
        /// The listener, e.g. 127.0.0.1:2575.
        #[arg(long)]
        to: String,
        /// Seconds to wait for each ACK.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check every tenant's hash chain (or one tenant's); says which entry was altered,
    /// removed or reordered, and exits non-zero if any chain is broken.
    Verify {
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// The active master key, and how many values each key seals.
    Status,
    /// Make a new master key active and re-seal everything under it, while hubs keep serving
    /// (they pick the new keyring up from the file within seconds). Old keys stay in the
    /// keyring until retired.
    Rotate,
    /// Remove a master key that no value needs any more.
    Retire { id: u32 },
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// The dead-letter queue: events a consumer could not apply.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Make a consumer group read again from an offset (effects stay exactly-once: what it
    /// already applied is skipped). On the embedded log a running hub picks it up; on Kafka
    /// stop the consumer's service first, then every partition it has committed on moves.
    Replay {
        /// The consumer group, e.g. `patient`.
        #[arg(long)]
        consumer: String,
        /// The first offset to deliver again (0: from the beginning).
        #[arg(long)]
        from: i64,
    },
    /// The events on a topic, one line each: position, key (the aggregate id), event type,
    /// event id, time. Payloads are not shown: they hold PHI.
    List {
        /// e.g. `patient-events`, `lab-events`.
        #[arg(long)]
        topic: String,
        /// Start at this offset (on Kafka: on every partition).
        #[arg(long, default_value_t = 0)]
        from: i64,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Create the Kafka topics of 000 §3.1 that are missing, with their partitions and
    /// retention (the hub also does this when it starts, with replication 1).
    InitTopics {
        /// Copies of each partition: 1 for a single broker, 3 on a production cluster.
        #[arg(long, default_value_t = 1)]
        replication: i32,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// One line per dead letter: offset, consumer, attempts, origin, time, error.
    List {
        /// Start at this DLQ offset.
        #[arg(long, default_value_t = 0)]
        from: i64,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One dead letter in full, as JSON (it contains the event as it was read).
    Show {
        /// Its position: `offset` on the embedded log, `partition:offset` on Kafka.
        position: String,
    },
    /// Put the event of a dead letter back on its topic, after fixing what made it fail.
    Replay {
        /// Its position: `offset` on the embedded log, `partition:offset` on Kafka.
        position: String,
    },
}

fn main() -> ExitCode {
    // Where the kernel backs memory with transparent huge pages by default (`always`),
    // mimalloc's regions fill 2 MiB at a time: an idle hub took 46 MB, against 26 MB with
    // them off, and throughput did not change. Best effort: a kernel that refuses keeps them.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let cli = Cli::parse();
    let mut config = match Config::load(cli.config.as_deref(), |k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("meditrack: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::Serve { listen, services } = &cli.command {
        if let Some(list) = services {
            match meditrack::config::parse_services(list) {
                Ok(s) => config.services = Some(s),
                Err(e) => {
                    eprintln!("meditrack: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        match listen {
            Some(addr) => config.listen = *addr,
            // The patient service alone listens where 000 §2.1.1 puts it.
            None if config.listen == Config::default().listen
                && config.services.as_deref() == Some(&[meditrack::Service::Patient]) =>
            {
                config.listen.set_port(8081);
            }
            // And the lab service where 000 §2.1.2 puts it.
            None if config.listen == Config::default().listen
                && config.services.as_deref() == Some(&[meditrack::Service::Lab]) =>
            {
                config.listen.set_port(8082);
            }
            None => {}
        }
    }
    // A server logs to stdout; a command keeps stdout for its answer (`$(meditrack login)`).
    if matches!(cli.command, Command::Serve { .. }) {
        meditrack::logging::init(&config, std::io::stdout);
    } else {
        meditrack::logging::init(&config, std::io::stderr);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("meditrack: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve { .. } => serve(config).await,
            Command::Migrate => meditrack::open_databases(&config)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Command::Config => {
                print_config(&config);
                Ok(())
            }
            Command::Events { command } => events(&config, command).await,
            Command::Users { command } => users(&config, command).await,
            #[allow(clippy::print_stdout)]
            Command::Audit {
                command: AuditCommand::Verify { tenant },
            } => {
                let (report, intact) = meditrack::trail::verify(&config, tenant.as_deref()).await?;
                print!("{report}");
                if intact {
                    Ok(())
                } else {
                    Err("the audit trail has been tampered with".to_owned())
                }
            }
            #[allow(clippy::print_stdout)]
            Command::Seed {
                patients,
                records_per_patient,
                seed,
                tenant,
            } => {
                let tenant = tenant.unwrap_or_else(|| config.default_tenant.clone());
                let options = meditrack::seed::SeedOptions {
                    patients,
                    records_per_patient,
                    seed,
                    tenant: kernel::TenantId::parse(&tenant)
                        .map_err(|e| format!("--tenant {tenant:?}: {e}"))?,
                };
                let done = meditrack::seed::seed(&config, &options, |p| match p {
                    meditrack::seed::Progress::Written {
                        patients: n,
                        per_second,
                    } => eprint!("\rseeded {n}/{patients} patients ({per_second:.0}/s)   "),
                    meditrack::seed::Progress::BuildingIndexes => {
                        eprint!("\rseeded {patients}/{patients} patients; building indexes   ")
                    }
                })
                .await?;
                eprintln!();
                println!(
                    "{} patients, {} medical records and {} lab orders in {:.1} s ({:.0} patients/s)",
                    done.patients,
                    done.records,
                    done.lab_orders,
                    done.seconds,
                    done.patients as f64 / done.seconds.max(1e-9)
                );
                Ok(())
            }
            #[allow(clippy::print_stdout)]
            Command::Bench {
                patients,
                duration,
                warmup,
                rate,
                scenarios,
                out,
                workers,
                hl7_connections,
                rounds,
                scale_patients,
                url,
                hl7,
                seed,
                fhir_peer,
                hub_log,
            } => {
                let options = meditrack::bench::BenchOptions {
                    patients,
                    warmup: std::time::Duration::from_secs(warmup),
                    duration: std::time::Duration::from_secs(duration),
                    rate,
                    only: scenarios,
                    out,
                    database_url: config.database_url.clone(),
                    kafka_brokers: config.kafka_brokers.clone(),
                    workers,
                    hl7_connections,
                    rounds: usize::from(rounds),
                    scale_patients,
                    given: url.map(|base| meditrack::bench::GivenHub {
                        base,
                        hl7,
                        seed,
                        config: config.clone(),
                    }),
                    fhir_peer,
                    hub_log,
                };
                let (report, path) = meditrack::bench::run(&options).await?;
                print!("{}", report.markdown());
                eprintln!("report: {}", path.display());
                Ok(())
            }
            #[allow(clippy::print_stdout)]
            Command::Hl7 {
                command: Hl7Command::Send { file, to, timeout },
            } => {
                let (report, accepted) =
                    meditrack::hl7_tool::send(&file, &to, std::time::Duration::from_secs(timeout))
                        .await?;
                print!("{report}");
                if accepted {
                    Ok(())
                } else {
                    Err("not every message was accepted".to_owned())
                }
            }
            #[allow(clippy::print_stdout)]
            Command::Keys { command } => {
                let out = match command {
                    KeysCommand::Status => meditrack::fields::status(&config).await,
                    KeysCommand::Rotate => meditrack::fields::rotate(&config).await,
                    KeysCommand::Retire { id } => meditrack::fields::retire(&config, id).await,
                }?;
                print!("{out}");
                Ok(())
            }
            Command::Login {
                username,
                password_stdin,
                url,
            } => login(&config, &username, password_stdin, url).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "meditrack stopped");
            eprintln!("meditrack: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), String> {
    let hub = meditrack::build(&config).await.map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    tracing::info!(
        listen = %config.listen,
        storage = if config.database_url.is_some() { "postgres" } else { "embedded sqlite" },
        data_dir = %config.data_dir.display(),
        "meditrack is serving"
    );
    hub.serve(listener, meditrack::shutdown_signal())
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!("meditrack stopped cleanly");
    Ok(())
}

/// The first line of standard input, without its line ending.
fn read_secret(password_stdin: bool, prompt: &str) -> Result<String, String> {
    if !password_stdin {
        eprint!("{prompt}: ");
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read standard input: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

#[allow(clippy::print_stdout)]
async fn users(config: &Config, command: UsersCommand) -> Result<(), String> {
    use identity::user::{Kind, NewUser};
    let (service, db) = meditrack::accounts::open_identity(config)
        .await
        .map_err(|e| e.to_string())?;
    let result = match command {
        UsersCommand::Add {
            username,
            roles,
            tenant,
            patient_id,
            provider_id,
            service_account,
            password_stdin,
        } => {
            let kind = if service_account {
                Kind::Service
            } else {
                Kind::Person
            };
            let tenant = tenant.unwrap_or_else(|| config.default_tenant.clone());
            let new = NewUser::parse(
                &username,
                &tenant,
                kind,
                &roles,
                patient_id.as_deref(),
                provider_id.as_deref(),
            )?;
            let (password, generated) = if password_stdin {
                (read_secret(true, "password")?, false)
            } else {
                (auth::random::token(), true)
            };
            let user = service
                .add_user(new, &password)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "added {} {} ({}) in tenant {} with roles {}",
                kind.as_str(),
                user.username,
                user.id,
                user.tenant,
                user.roles.join(",")
            );
            if generated {
                let what = if service_account {
                    "client secret"
                } else {
                    "password"
                };
                println!("{what} (shown once, keep it safe): {password}");
            }
            Ok(())
        }
        UsersCommand::List { tenant } => {
            let tenant = tenant
                .map(|t| kernel::TenantId::parse(&t).map_err(|e| e.to_string()))
                .transpose()?;
            let users = service
                .users(tenant.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            if users.is_empty() {
                println!("no users");
            }
            for u in users {
                println!(
                    "{}\t{}\t{}\t{}\t{}{}",
                    u.id,
                    u.username,
                    u.tenant,
                    u.kind.as_str(),
                    u.roles.join(","),
                    if u.disabled { "\tdisabled" } else { "" }
                );
            }
            Ok(())
        }
        UsersCommand::Disable { username } => {
            match service
                .disable(&username)
                .await
                .map_err(|e| e.to_string())?
            {
                true => {
                    println!("disabled {username}; its sessions are ended");
                    Ok(())
                }
                false => Err(format!("no enabled user named {username}")),
            }
        }
    };
    db.close().await;
    result
}

#[allow(clippy::print_stdout)]
async fn login(
    config: &Config,
    username: &str,
    password_stdin: bool,
    url: Option<String>,
) -> Result<(), String> {
    let password = read_secret(password_stdin, "password")?;
    let base = url.unwrap_or_else(|| config.public_url());
    let endpoint = format!("{}/auth/token", base.trim_end_matches('/'));
    let answer = reqwest::Client::new()
        .post(&endpoint)
        .json(&serde_json::json!({
            "grant_type": "password",
            "username": username,
            "password": password,
        }))
        .send()
        .await
        .map_err(|e| format!("cannot reach {endpoint}: {e}"))?;
    let status = answer.status();
    let body: serde_json::Value = answer.json().await.unwrap_or_default();
    match body["access_token"].as_str() {
        Some(token) if status.is_success() => {
            println!("{token}");
            Ok(())
        }
        _ => Err(format!(
            "login refused ({status}): {}",
            body["detail"].as_str().unwrap_or("no detail")
        )),
    }
}

#[allow(clippy::print_stdout)]
/// `42` or `1:42`: a position in `dlq-events` (partition 0 when none is named).
fn position(text: &str) -> Result<(i32, i64), String> {
    let bad = || format!("'{text}' is not a position: use an offset, or partition:offset");
    match text.split_once(':') {
        Some((p, o)) => Ok((p.parse().map_err(|_| bad())?, o.parse().map_err(|_| bad())?)),
        None => Ok((0, text.parse().map_err(|_| bad())?)),
    }
}

/// One line per event, with what identifies it and nothing of its payload.
#[allow(clippy::print_stdout)]
fn print_events(deliveries: &[eventbus::Delivery], from: i64, limit: usize, kafka: bool) {
    let shown: Vec<_> = deliveries
        .iter()
        .filter(|d| d.offset >= from)
        .take(limit)
        .collect();
    if shown.is_empty() {
        println!("no events");
    }
    for d in shown {
        let envelope: serde_json::Value = serde_json::from_str(&d.payload).unwrap_or_default();
        let field = |name: &str| envelope[name].as_str().unwrap_or("?").to_owned();
        let position = if kafka {
            format!("{}:{}", d.partition, d.offset)
        } else {
            d.offset.to_string()
        };
        println!(
            "{position}\t{}\t{}\t{}\t{}",
            d.key,
            field("eventType"),
            field("eventId"),
            field("occurredAt")
        );
    }
}

#[allow(clippy::print_stdout)]
fn print_letter(position: &str, l: &eventbus::consumer::DeadLetter) {
    println!(
        "{position}\t{}\tattempts={}\t{}@{}\t{}\t{}",
        l.consumer,
        l.attempts,
        l.original_topic,
        l.original_offset,
        l.dead_lettered_at.to_rfc3339(),
        l.error
    );
}

#[allow(clippy::print_stdout)]
async fn events(config: &Config, command: EventsCommand) -> Result<(), String> {
    if config.kafka_brokers.is_some() {
        return kafka_events(config, command).await;
    }
    let log = eventbus::embedded::EmbeddedLog::open(&meditrack::store_config(config))
        .await
        .map_err(|e| e.to_string())?;
    match command {
        EventsCommand::Replay { consumer, from } => {
            log.seek(&consumer, from).await.map_err(|e| e.to_string())?;
            println!("consumer {consumer} will read again from offset {from}");
        }
        EventsCommand::InitTopics { .. } => {
            println!(
                "the embedded event log has no topics to create (MEDITRACK_KAFKA_BROKERS is unset)"
            );
        }
        EventsCommand::List { topic, from, limit } => {
            let records = log
                .records(&topic, from, limit)
                .await
                .map_err(|e| e.to_string())?;
            print_events(&records, from, limit, false);
        }
        EventsCommand::Dlq {
            command: DlqCommand::List { from, limit },
        } => {
            let entries = eventbus::dlq::list(&log, from, limit)
                .await
                .map_err(|e| e.to_string())?;
            if entries.is_empty() {
                println!("the dead-letter queue is empty");
            }
            for e in entries {
                print_letter(&e.offset.to_string(), &e.letter);
            }
        }
        EventsCommand::Dlq {
            command: DlqCommand::Show { position: at },
        } => {
            let (_, offset) = position(&at)?;
            let entry = eventbus::dlq::show(&log, offset)
                .await
                .map_err(|e| e.to_string())?;
            let entry = entry.ok_or_else(|| format!("no dead letter at {at}"))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&entry.letter).unwrap_or_default()
            );
        }
        EventsCommand::Dlq {
            command: DlqCommand::Replay { position: at },
        } => {
            let (_, offset) = position(&at)?;
            let entry = eventbus::dlq::replay(&log, offset)
                .await
                .map_err(|e| e.to_string())?;
            let entry = entry.ok_or_else(|| format!("no dead letter at {at}"))?;
            println!(
                "replayed dead letter {at} onto {}",
                entry.letter.original_topic
            );
        }
    }
    log.db().close().await;
    Ok(())
}

#[cfg(feature = "kafka")]
#[allow(clippy::print_stdout)]
async fn kafka_events(config: &Config, command: EventsCommand) -> Result<(), String> {
    use eventbus::kafka::{dead_letters, ensure_topics, replay_dead_letter, reset_group};
    let Some(settings) = meditrack::kafka_settings(config) else {
        return Err("MEDITRACK_KAFKA_BROKERS is unset".to_owned());
    };
    match command {
        EventsCommand::Replay { consumer, from } => {
            let moved = reset_group(&settings, &consumer, from)
                .await
                .map_err(|e| e.to_string())?;
            if moved.is_empty() {
                println!(
                    "consumer {consumer} has no committed positions: it reads from the beginning when it starts"
                );
            }
            for p in moved {
                println!(
                    "consumer {consumer} will read {}:{} again from offset {}",
                    p.topic, p.partition, p.offset
                );
            }
        }
        EventsCommand::List { topic, from, limit } => {
            let mut records = eventbus::kafka::read_all(&settings, &topic)
                .await
                .map_err(|e| e.to_string())?;
            records.sort_by_key(|d| (d.partition, d.offset));
            print_events(&records, from, limit, true);
        }
        EventsCommand::InitTopics { replication } => {
            if replication < 1 {
                return Err("--replication must be at least 1".to_owned());
            }
            ensure_topics(&settings, replication)
                .await
                .map_err(|e| e.to_string())?;
            println!("the topics of the event backbone exist");
        }
        EventsCommand::Dlq {
            command: DlqCommand::List { from, limit },
        } => {
            let letters = dead_letters(&settings).await.map_err(|e| e.to_string())?;
            let shown: Vec<_> = letters
                .iter()
                .filter(|(_, o, _)| *o >= from)
                .take(limit)
                .collect();
            if shown.is_empty() {
                println!("the dead-letter queue is empty");
            }
            for (p, o, l) in shown {
                print_letter(&format!("{p}:{o}"), l);
            }
        }
        EventsCommand::Dlq {
            command: DlqCommand::Show { position: at },
        } => {
            let (partition, offset) = position(&at)?;
            let letters = dead_letters(&settings).await.map_err(|e| e.to_string())?;
            let (.., letter) = letters
                .into_iter()
                .find(|(p, o, _)| (*p, *o) == (partition, offset))
                .ok_or_else(|| format!("no dead letter at {at}"))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&letter).unwrap_or_default()
            );
        }
        EventsCommand::Dlq {
            command: DlqCommand::Replay { position: at },
        } => {
            let (partition, offset) = position(&at)?;
            let letter = replay_dead_letter(&settings, partition, offset)
                .await
                .map_err(|e| e.to_string())?;
            let letter = letter.ok_or_else(|| format!("no dead letter at {at}"))?;
            println!("replayed dead letter {at} onto {}", letter.original_topic);
        }
    }
    Ok(())
}

#[cfg(not(feature = "kafka"))]
async fn kafka_events(_config: &Config, _command: EventsCommand) -> Result<(), String> {
    Err("MEDITRACK_KAFKA_BROKERS is set, but this build has no Kafka support: build with --features kafka".to_owned())
}

#[allow(clippy::print_stdout)]
fn print_config(c: &Config) {
    println!("listen = \"{}\"", c.listen);
    println!("data_dir = \"{}\"", c.data_dir.display());
    match c.database_url_redacted() {
        Some(url) => println!("database_url = \"{url}\""),
        None => println!("# database_url unset: embedded SQLite under data_dir"),
    }
    match &c.kafka_brokers {
        Some(brokers) => println!("kafka_brokers = \"{brokers}\""),
        None => println!("# kafka_brokers unset: embedded event log under data_dir"),
    }
    println!("kafka_prefix = \"{}\"", c.kafka_prefix);
    let properties: Vec<String> = c
        .kafka_producer_config
        .iter()
        .map(|(k, v)| {
            let secret = k.contains("password") || k.contains("secret");
            format!("{k}={}", if secret { "***" } else { v.as_str() })
        })
        .collect();
    println!("kafka_producer_config = \"{}\"", properties.join(","));
    println!("instance_id = \"{}\"", c.instance());
    println!(
        "log_format = \"{}\"",
        if c.log_format == LogFormat::Json {
            "json"
        } else {
            "text"
        }
    );
    println!("log_level = \"{}\"", c.log_level);
    println!("public_url = \"{}\"", c.public_url());
    match &c.oidc_issuer {
        Some(issuer) => println!("oidc_issuer = \"{issuer}\""),
        None => println!("# oidc_issuer unset: tokens from this hub's built-in issuer"),
    }
    println!("oidc_audience = \"{}\"", c.oidc_audience);
    if let Some(url) = &c.oidc_jwks_url {
        println!("oidc_jwks_url = \"{url}\"");
    }
    println!("rate_limit_per_ip = {}", c.rate_limit_per_ip);
    println!("rate_limit_per_subject = {}", c.rate_limit_per_subject);
    match c.redis_url.as_deref() {
        Some(url) => println!(
            "redis_url = \"{}\"",
            meditrack::config::redact_password(url)
        ),
        None => println!("# redis_url unset: rate limits kept in this process"),
    }
    println!("redis_prefix = \"{}\"", c.redis_prefix);
    println!(
        "cors_allowed_origins = \"{}\"",
        c.cors_allowed_origins.join(",")
    );
    match (&c.tls_cert_file, &c.tls_key_file) {
        (Some(cert), Some(key)) => {
            println!("tls_cert_file = \"{}\"", cert.display());
            println!("tls_key_file = \"{}\"", key.display());
        }
        _ => println!("# tls unset: plain HTTP"),
    }
    match &c.keyring {
        Some(_) => println!("keyring = \"[redacted]\""),
        None => println!("keyring_file = \"{}\"", c.keyring_path().display()),
    }
    println!("audit_retention_days = {}", c.audit_retention_days);
    println!("default_tenant = \"{}\"", c.default_tenant);
    println!("max_body_bytes = {}", c.max_body_bytes);
    println!("db_max_connections = {}", c.db_max_connections);
}
