//! A private single-node Slurm cluster (Debian's `slurm-wlm` and `munge`):
//! munged, slurmctld and slurmd on loopback with their own config, state,
//! sockets and free ports in a temp dir, stopped on drop. The client
//! commands (`sbatch`, `squeue`, `scancel`) reach it through `SLURM_CONF`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, TestDir};

/// The running cluster.
pub struct Slurm {
    dir: TestDir,
    daemons: Vec<Child>,
}

fn spawn(cmd: &mut Command, log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    cmd.stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}; scripts/test installs slurm-wlm and munge"))
}

impl Slurm {
    /// Start munged, slurmctld and slurmd, and wait until the node is idle.
    pub fn start() -> Slurm {
        let dir = TestDir::new();
        let p = dir.path().to_path_buf();
        for sub in ["run", "state", "spool", "log"] {
            std::fs::create_dir_all(p.join(sub)).unwrap();
        }
        let key: Vec<u8> = (0..1024).map(|_| fastrand::u8(..)).collect();
        std::fs::write(p.join("munge.key"), key).unwrap();
        super::chmod(&p.join("munge.key"), "400");
        let host = String::from_utf8(Command::new("hostname").arg("-s").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_owned();
        let d = p.display();
        let conf = format!(
            "ClusterName=mailshot-test\n\
             SlurmctldHost={host}(127.0.0.1)\n\
             SlurmctldPort={}\nSlurmdPort={}\n\
             SlurmUser=root\nSlurmdUser=root\n\
             AuthType=auth/munge\nAuthInfo=socket={d}/run/munge.sock\nCredType=cred/munge\n\
             StateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
             SlurmctldPidFile={d}/run/slurmctld.pid\nSlurmdPidFile={d}/run/slurmd.pid\n\
             SlurmctldLogFile={d}/log/slurmctld.log\nSlurmdLogFile={d}/log/slurmd.log\n\
             ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nMpiDefault=none\n\
             JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n\
             SchedulerType=sched/builtin\nSelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n\
             ReturnToService=2\nKillWait=20\n\
             NodeName=mshot NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN\n\
             PartitionName=test Nodes=mshot Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4\n",
            free_port(),
            free_port()
        );
        std::fs::write(p.join("slurm.conf"), conf).unwrap();
        let mut slurm = Slurm {
            dir,
            daemons: Vec::new(),
        };
        slurm.daemons.push(spawn(
            Command::new("munged")
                .args(["-f", "-F"])
                .arg(format!("--key-file={d}/munge.key"))
                .arg(format!("--socket={d}/run/munge.sock"))
                .arg(format!("--pid-file={d}/run/munged.pid"))
                .arg(format!("--log-file={d}/log/munged.log"))
                .arg(format!("--seed-file={d}/run/munged.seed")),
            &p.join("log/munged.out"),
        ));
        let socket = p.join("run/munge.sock");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "munged did not start: {}",
                slurm.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let conf = slurm.conf();
        slurm.daemons.push(spawn(
            Command::new("slurmctld").arg("-D").arg("-f").arg(&conf),
            &p.join("log/slurmctld.out"),
        ));
        slurm.daemons.push(spawn(
            Command::new("slurmd")
                .args(["-D", "-N", "mshot", "-f"])
                .arg(&conf),
            &p.join("log/slurmd.out"),
        ));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let state = slurm
                .client("sinfo")
                .args(["-h", "-o", "%t"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&state.stdout).trim() == "idle" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the Slurm node never became idle: {}",
                slurm.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        slurm
    }

    /// The cluster's `slurm.conf`.
    pub fn conf(&self) -> PathBuf {
        self.dir.join("slurm.conf")
    }

    /// A Slurm client command (`sbatch`, `squeue`, `scancel`) for this cluster.
    pub fn client(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("SLURM_CONF", self.conf());
        cmd
    }

    /// `sbatch --parsable ARGS`: the job id.
    pub fn sbatch(&self, cmd: &mut Command) -> String {
        let out = cmd.env("SLURM_CONF", self.conf()).output().unwrap();
        assert!(
            out.status.success(),
            "sbatch: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    }

    /// The ids of the jobs (array tasks as `JOB_TASK`) still queued or running.
    pub fn queue(&self) -> Vec<String> {
        let out = self
            .client("squeue")
            .args(["-h", "-r", "-o", "%i"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Waits until nothing is queued or running (at most `limit`).
    pub fn wait_empty(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.queue().is_empty() {
            assert!(
                Instant::now() < deadline,
                "Slurm jobs still queued: {:?}",
                self.queue()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The daemons' logs, for a failing test.
    pub fn logs(&self) -> String {
        ["munged.out", "slurmctld.out", "slurmd.out"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.join("log").join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        // slurmd, slurmctld, then munged: the ones this fixture started.
        for child in self.daemons.iter_mut().rev() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
