//! The daemon's state: the registry of live containers and the pools of networks, uids and
//! ports. [`Daemon::handle`] carries out one request. Locks are held only for map and pool
//! updates, never across a wait, so one container's slow step never blocks another's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use log::{info, warn};
use serde_json::{json, Value};

use crate::cgroup::Cgroups;
use crate::config::Config;
use crate::container::{self, Container};
use crate::error::{Error, Result};
use crate::pool::{NetworkPool, PortPool, UidPool};
use crate::protocol::{CreateOptions, Request};
use crate::scripts;

/// Where the daemon finds its companions.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The hooks directory copied into every container's `lib/`.
    pub hooks: PathBuf,
    /// The `wshd` binary.
    pub wshd: PathBuf,
}

pub struct Pools {
    pub networks: NetworkPool,
    pub uids: UidPool,
    pub ports: PortPool,
}

pub struct Daemon {
    pub config: Config,
    pub paths: Paths,
    pub cgroups: Cgroups,
    pools: Mutex<Pools>,
    containers: Mutex<HashMap<String, Arc<Container>>>,
}

/// What one connection holds: the containers it referenced, for the grace timer. Held
/// weakly, and by container rather than by handle, since a destroyed container's handle
/// may be given to a new one.
#[derive(Default)]
pub struct Connection {
    referenced: Vec<Weak<Container>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data (single updates).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Daemon {
    pub fn new(config: Config, paths: Paths, cgroups: Cgroups) -> Arc<Daemon> {
        let pools = Pools {
            networks: NetworkPool::new(config.network.pool_start_address, config.network.pool_size),
            uids: UidPool::new(config.user.pool_start_uid, config.user.pool_size),
            ports: PortPool::default_range(),
        };
        Arc::new(Daemon {
            config,
            paths,
            cgroups,
            pools: Mutex::new(pools),
            containers: Mutex::new(HashMap::new()),
        })
    }

    pub fn depot(&self) -> &Path {
        &self.config.server.container_depot_path
    }

    pub(crate) fn pools(&self) -> MutexGuard<'_, Pools> {
        lock(&self.pools)
    }

    /// Host-wide setup, once at start: cgroup parents, firewall chains, and the removal of
    /// whatever an earlier run left in the depot.
    pub async fn start(self: &Arc<Self>) -> Result<()> {
        self.cgroups.setup()?;
        std::fs::create_dir_all(self.depot()).map_err(crate::error::io("create", self.depot()))?;
        self.destroy_leftovers().await;
        self.host_net("setup").await
    }

    /// Destroys every container. The host-wide firewall chains stay: they match only
    /// container interfaces, and another daemon on this host (or the next start) uses them.
    pub async fn shutdown(self: &Arc<Self>) {
        let all: Vec<_> = lock(&self.containers).keys().cloned().collect();
        let tasks: Vec<_> = all
            .into_iter()
            .map(|h| {
                let d = self.clone();
                tokio::spawn(async move { d.destroy(&h).await })
            })
            .collect();
        for t in tasks {
            if let Ok(Err(e)) = t.await {
                warn!("shutdown-destroy-failed error={e}");
            }
        }
    }

    async fn host_net(&self, action: &str) -> Result<()> {
        let n = &self.config.network;
        let join = |v: &[crate::config::Cidr]| {
            v.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let env = [
            ("POOL_NETWORK", self.pools().networks.cidr().to_string()),
            ("ALLOW_NETWORKS", join(&n.allow_networks)),
            ("DENY_NETWORKS", join(&n.deny_networks)),
        ];
        scripts::run(
            &self.paths.hooks.join("net-host.sh"),
            &[action],
            &self.paths.hooks,
            env,
        )
        .await
    }

    async fn destroy_leftovers(&self) {
        let Ok(entries) = std::fs::read_dir(self.depot()) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.len() != 8 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            info!("destroy-leftover handle={name}");
            let cg = self.cgroups.open(&name);
            if let Err(e) = container::teardown(&e.path(), None, &cg).await {
                warn!("destroy-leftover-failed handle={name} error={e}");
            }
        }
    }

    pub fn get(&self, handle: &str) -> Result<Arc<Container>> {
        lock(&self.containers)
            .get(handle)
            .cloned()
            .ok_or_else(|| Error::UnknownHandle(handle.to_string()))
    }

    pub fn handles(&self) -> Vec<String> {
        let mut v: Vec<_> = lock(&self.containers).keys().cloned().collect();
        v.sort();
        v
    }

    /// Carries out one request for `conn`.
    pub async fn handle(self: &Arc<Self>, req: Request, conn: &mut Connection) -> Result<Value> {
        if let Some(h) = req.handle() {
            let c = self.get(h)?;
            self.reference(&c, conn);
        }
        match req {
            Request::Ping => Ok(json!("pong")),
            Request::List => Ok(json!(self.handles())),
            Request::Create(opts) => {
                let c = self.create(opts).await?;
                self.reference(&c, conn);
                Ok(json!(c.handle))
            }
            Request::Spawn { handle, script } => {
                Ok(json!(self.get(&handle)?.spawn(self, script).await?))
            }
            Request::Link { handle, job } => {
                let job = self.get(&handle)?.job(job)?;
                Ok(job.link().await.to_json())
            }
            Request::Run { handle, script } => {
                let c = self.get(&handle)?;
                let id = c.spawn(self, script).await?;
                Ok(c.job(id)?.link().await.to_json())
            }
            Request::LimitMem { handle, value } => {
                let c = self.get(&handle)?;
                match value {
                    Some(bytes) => c.set_memory_limit(bytes).map(|_| json!("ok")),
                    None => Ok(json!(c.memory_limit()?)),
                }
            }
            Request::NetIn { handle } => Ok(json!(self.get(&handle)?.net_in(self).await?)),
            Request::NetOut { handle, rule } => {
                self.get(&handle)?.net_out(rule).await?;
                Ok(json!("ok"))
            }
            Request::CopyIn { handle, src, dst } => {
                self.get(&handle)?.copy_in(self, src, dst).await?;
                Ok(json!("ok"))
            }
            Request::CopyOut {
                handle,
                src,
                dst,
                owner,
            } => {
                self.get(&handle)?.copy_out(src, dst, owner).await?;
                Ok(json!("ok"))
            }
            Request::Stop { handle } => {
                self.get(&handle)?
                    .stop(self.config.server.container_stop_grace_time)
                    .await?;
                Ok(json!("ok"))
            }
            Request::Destroy { handle } => {
                self.destroy(&handle).await?;
                Ok(json!("ok"))
            }
            Request::Info { handle } => self.get(&handle)?.info(),
        }
    }

    /// Counts `conn` as a user of `c`, which cancels a pending grace timer.
    fn reference(&self, c: &Arc<Container>, conn: &mut Connection) {
        let new = Arc::downgrade(c);
        conn.referenced.retain(|w| w.strong_count() > 0);
        if !conn.referenced.iter().any(|w| w.ptr_eq(&new)) {
            conn.referenced.push(new);
            c.add_ref();
        }
    }

    /// The connection closed: drop its references, and start the grace timer of each
    /// container that no connection references any more.
    pub fn disconnect(self: &Arc<Self>, conn: Connection) {
        for c in conn.referenced {
            let Some(c) = c.upgrade() else { continue };
            let Some((grace, generation)) = c.drop_ref() else {
                continue;
            };
            let h = c.handle.clone();
            let d = self.clone();
            let c = Arc::downgrade(&c);
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                // Gone, destroyed (its handle may be someone else's now) or referenced again.
                if c.upgrade().is_some_and(|c| c.grace_expired(generation)) {
                    info!("grace-expired handle={h}");
                    if let Err(e) = d.destroy(&h).await {
                        warn!("grace-destroy-failed handle={h} error={e}");
                    }
                }
            });
        }
    }

    async fn create(self: &Arc<Self>, opts: CreateOptions) -> Result<Arc<Container>> {
        let started = Instant::now();
        let grace = opts
            .grace_time
            .unwrap_or(self.config.server.container_grace_time);
        let c = container::create(self, opts, grace).await?;
        let c = Arc::new(c);
        lock(&self.containers).insert(c.handle.clone(), c.clone());
        c.clone().watch(self.clone());
        info!(
            "created handle={} took_ms={:.1}",
            c.handle,
            started.elapsed().as_secs_f64() * 1e3
        );
        Ok(c)
    }

    /// Stops and removes a container and everything it holds. A second destroy of the same
    /// handle gets "unknown handle".
    pub async fn destroy(self: &Arc<Self>, handle: &str) -> Result<()> {
        let started = Instant::now();
        let c = lock(&self.containers)
            .remove(handle)
            .ok_or_else(|| Error::UnknownHandle(handle.to_string()))?;
        let result = c.destroy(self).await;
        info!(
            "destroyed handle={handle} took_ms={:.1}",
            started.elapsed().as_secs_f64() * 1e3
        );
        result
    }

    pub fn stop_grace(&self) -> Duration {
        self.config.server.container_stop_grace_time
    }
}
