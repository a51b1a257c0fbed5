//! Children that die with the test process.
//!
//! A test that panics still runs destructors, which kill its servers. A test process that is
//! aborted or killed (a timeout in nextest, `SIGKILL`, `abort()`) runs none, and its servers
//! would live on as orphans holding ports. To prevent that, every child is started with
//! `PR_SET_PDEATHSIG = SIGKILL`: the kernel kills it when its parent *thread* ends. So that the
//! parent thread is not whichever short-lived test or runtime thread asked, all children are
//! spawned from one dedicated thread that lives as long as the process.

use std::io;
use std::process::{Child, Command};
use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, OnceLock};
use std::thread;

type Reply = Sender<io::Result<Child>>;

fn spawner() -> &'static Mutex<Sender<(Command, Reply)>> {
    static SPAWNER: OnceLock<Mutex<Sender<(Command, Reply)>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<(Command, Reply)>();
        thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    // The requester may have gone away; nothing to do then.
                    let _ = reply.send(command.spawn());
                }
            })
            .map_err(|e| eprintln!("testkit: cannot start the spawner thread: {e}"))
            .ok();
        Mutex::new(tx)
    })
}

/// Spawns `command` so that it is killed when this process ends, however it ends.
pub fn spawn(mut command: Command) -> io::Result<Child> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
        // functions (prctl, getppid, _exit).
        let parent = unsafe { libc::getpid() };
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl: then nobody would kill us.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner()
        .lock()
        .map_err(|_| io::Error::other("testkit spawner lock poisoned"))?
        .send((command, reply_tx))
        .map_err(|_| io::Error::other("testkit spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("testkit spawner thread did not answer"))?
}

/// Sends SIGKILL to `child` and reaps it. A child that already exited is fine.
pub fn kill(child: &mut Child) -> io::Result<()> {
    match child.kill() {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {} // already reaped
        Err(e) => return Err(e),
    }
    child.wait().map(|_| ())
}

/// Sends SIGTERM, as an orchestrator stopping a service would. Does not wait.
pub fn terminate(child: &Child) -> io::Result<()> {
    let pid = libc::pid_t::try_from(child.id()).map_err(io::Error::other)?;
    // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
