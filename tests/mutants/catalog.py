"""The deliberate bugs: each breaks one promise of the README and must fail the tests named with
it. `function` names where the patch goes ("Class.method" or "function" in `file`); the old text
must occur exactly once inside that function, so a patch that no longer fits the code is reported
instead of silently testing nothing. After a refactoring, move `file`/`function` (and `old`) to
where the code now lives; the promise and the guarding tests stay."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    name: str
    promise: str
    file: str
    function: str
    old: str
    new: str
    tests: tuple[str, ...]  # pytest arguments: node ids (and -k/-m if needed)


PROMISES = "tests/integration/test_promises.py"
FAULTS = "tests/faults/test_faults.py"
PROMISES_FAULTS = "tests/faults/test_promises_under_attack.py"
FORWARD_FAULTS = "tests/faults/test_forward_faults.py"
TRUST = "tests/faults/test_trust.py"
ATTACKS_THREE = "tests/faults/test_attacks_three.py"

MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "shell-exit-no-logout",
        "the manager logs out when the watched shell exits",
        "spacetail/manager/service.py",
        "Manager.shutdown",
        "if self.logout_on_stop and not never_ran:",
        # (the ending the shell's exit gives is the one thing told apart: every other still
        # logs out)
        "if self.logout_on_stop and not never_ran"
        " and self.life.ending != self.lifetime.shell_gone():",
        (f"{PROMISES}::test_watched_shell_exit_logs_out_within_2s",),
    ),
    Mutant(
        "shell-exit-late",
        "the manager stops within 2 s of the shell's exit",
        "spacetail/manager/lifetime.py",
        "Lifetime.register",
        "                sel.unregister(fd)\n",
        '                sel.unregister(fd)\n                __import__("time").sleep(2.5)\n',
        (
            f"{PROMISES}::test_watched_shell_exit_logs_out_within_2s",
            "tests/e2e/test_spacelift_runs.py::"
            "test_failed_command_skips_down_and_the_manager_stops_with_the_shell",
        ),
    ),
    Mutant(
        "tailscaled-env-has-proxies",
        "tailscaled runs without any proxy variable",
        "spacetail/manager/service.py",
        "Manager._spawn_child",
        'env = clean_env(self.launch.env) | {"TS_LOGS_DIR": str(self.paths.node_state_dir)}',
        'env = clean_env(self.launch.env) | {"TS_LOGS_DIR": str(self.paths.node_state_dir)} | '
        '{k: v for k, v in self.launch.env.items() if "proxy" in k.lower()}',
        (f"{PROMISES}::test_tailscaled_gets_none_of_the_proxy_variables_up_had",),
    ),
    Mutant(
        "key-file-kept",
        "the key file is removed once tailscale has read it (Starting)",
        "spacetail/manager/login.py",
        "Login.on_state",
        "            self._clear_secret()\n",
        "            pass\n",
        (f"{PROMISES}::test_key_file_is_0600_while_it_exists_and_gone_once_starting",),
    ),
    Mutant(
        "key-file-0644",
        "the key file is 0600",
        "spacetail/state/statedir.py",
        "write_secret",
        "    write_atomic(path, payload.encode())\n",
        "    write_atomic(path, payload.encode())\n    os.chmod(path, 0o644)\n",
        (f"{PROMISES}::test_key_file_is_0600_while_it_exists_and_gone_once_starting",),
    ),
    Mutant(
        "down-keeps-saved-env",
        "down removes spacetail's proxy lines from the saved environment",
        "spacetail/commands/down.py",
        "down",
        "count = clean_saved_env(path, (proxies or _default_proxies()).to_json())",
        "count = 0",
        ("tests/e2e/test_spacelift_runs.py::test_down_cleans_the_saved_environment_itself",),
    ),
    Mutant(
        "restart-no-backoff",
        "tailscaled is restarted with backoff 0.5, 1, 2, 4, 8 s",
        "spacetail/manager/supervisor.py",
        "Supervisor.schedule_restart",
        "delay = min(8.0, 0.5 * 2.0 ** (self.restarts - 1))",
        "delay = 0.0",
        (f"{FAULTS}::test_tailscaled_crashing_repeatedly_ends_in_failed",),
    ),
    Mutant(
        "socket-loose-then-chmod",
        "the control socket is never looser than 0600, not even for an instant",
        "spacetail/state/control.py",
        "bind_listener",
        "old = os.umask(0o177)",
        "old = os.umask(0)",
        ("tests/unit/test_control.py::test_listener_is_0600_from_the_moment_it_is_bound",),
    ),
    Mutant(
        "no-pdeathsig",
        "tailscaled dies with a SIGKILLed manager",
        "spacetail/manager/children.py",
        "die_with_parent",
        "libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)",
        "pass",
        (f"{FAULTS}::test_manager_sigkill_takes_tailscaled_along_and_down_cleans",),
    ),
    Mutant(
        "log-follows-symlink",
        "a symlink planted at a log is never followed",
        "spacetail/log.py",
        "open_append",
        # paths.open_regular refuses a link (O_NOFOLLOW) and anything but a regular file; the
        # bug opens the path as it is, following whatever was planted there.
        "        return open_regular(path, flags)\n",
        "        return os.open(path, flags, 0o600)\n",
        (f"{FAULTS}::test_symlink_at_a_log_is_not_followed",),
    ),
    Mutant(
        "peer-unchecked",
        "the control socket refuses another user",
        "spacetail/state/control.py",
        "peer_allowed",
        "return uid in (os.getuid(), 0)",
        "return True",
        ("tests/faults/test_hostile.py::test_so_peercred_refuses_another_uid",),
    ),
    Mutant(
        "signal-unproven",
        "never signal a process not proven to be ours",
        "spacetail/state/identity.py",
        "ProvenProcess.open",
        "        if not ident.alive():\n            return None\n        handle = cls(ident)",
        "        handle = cls(ident)\n        return handle",
        (
            "tests/unit/test_identity.py::test_recycled_pid_is_not_the_same_process",
            "tests/e2e/test_spacelift_runs.py::"
            "test_killed_container_then_down_and_up_in_fresh_containers",
        ),
    ),
    Mutant(
        "pid-without-start-time",
        "a recorded PID is ours only with the same start time",
        "spacetail/state/identity.py",
        "ProcessIdentity.alive",
        "start_time(self.pid) == self.start_time",
        "start_time(self.pid) is not None",
        ("tests/unit/test_identity.py::test_recycled_pid_is_not_the_same_process",),
    ),
    Mutant(
        "lifetime-ignored",
        "the manager stops at its maximum lifetime",
        "spacetail/manager/lifetime.py",
        "Lifetime.__init__",
        "clock() + max_lifetime if max_lifetime > 0 else None",
        "None",
        ("tests/integration/test_commands.py::test_max_lifetime",),
    ),
    Mutant(
        "secret-on-command-line",
        "a secret reaches tailscale up only as file:",
        "spacetail/tailnet/tailscale.py",
        "up_argv",
        'argv.append(f"--{auth.file_flag}=file:{secret_file}")',
        'argv.append(f"--{auth.file_flag}={auth.secret.read()}")',
        (
            "tests/unit/test_tailscale.py::test_command_lines_never_hold_a_secret",
            "tests/integration/test_auth.py::test_oauth_client_secret_with_tags",
        ),
    ),
    Mutant(
        "no-setsid",
        "the manager is detached: a session of its own",
        "spacetail/manager/daemon.py",
        "spawn",
        "os.setsid()",
        "pass",
        (f"{PROMISES}::test_manager_is_detached_from_the_callers_session_and_descriptors",),
    ),
    Mutant(
        "fds-inherited",
        "the manager keeps none of the caller's descriptors open",
        "spacetail/manager/daemon.py",
        "spawn",
        "close_fds([*keep, w])",
        "pass",
        (f"{PROMISES}::test_manager_is_detached_from_the_callers_session_and_descriptors",),
    ),
    Mutant(
        "no-redaction",
        "no secret in a log",
        "spacetail/log.py",
        "redact",
        'return re.sub(_SECRETS, lambda m: m.group(0)[:11] + "…[redacted]", text)',
        "return text",
        ("tests/unit/test_log.py",),
    ),
    Mutant(
        "no-sigkill-escalation",
        "a tailscaled that ignores SIGTERM gets SIGKILL after 0.8 s",
        "spacetail/state/identity.py",
        "terminate",
        "    proc.signal(signal.SIGKILL)\n",
        "",
        (f"{FAULTS}::test_sigkill_of_down_while_the_manager_stops[ignores-term]",),
    ),
    Mutant(
        "stale-key-kept",
        "down removes the key file a killed manager left",
        "spacetail/state/statedir.py",
        "clean_stale",
        "removed += clear_secrets(paths)",
        "pass",
        (f"{FAULTS}::test_sigkill_of_manager_during_login",),
    ),
    Mutant(
        "manager-keeps-saved-env",
        "after a failed phase the manager removes its proxy lines from the saved environment",
        "spacetail/manager/service.py",
        "Manager.shutdown",
        "for path in clean_saved_envs(self.launch.env, self.cfg.proxies):",
        "for path in clean_saved_envs({}, self.cfg.proxies):  # no saved environment found",
        (
            "tests/e2e/test_spacelift_runs.py::"
            "test_failed_command_skips_down_and_the_manager_stops_with_the_shell",
        ),
    ),
    Mutant(
        "peer-full-name-without-dot",
        "a peer's full MagicDNS name reaches tailscale ping with its final dot",
        "spacetail/tailnet/tailscale.py",
        "ping_target",
        'return peer + "."',
        "return peer",
        (
            "tests/unit/test_tailscale.py::test_ping_gets_a_full_name_with_its_final_dot",
            "tests/integration/test_auth.py::test_peers",
        ),
    ),
    Mutant(
        "permanent-error-retried",
        "an invalid key fails at once with tailscale's words",
        "spacetail/tailnet/failures.py",
        "Failure.retryable",
        "return self.kind in RETRYABLE",
        "return True",
        (
            "tests/unit/test_tailscale.py::test_permanent",  # first: fails in a second, not 30
            "tests/integration/test_auth.py::test_permanent_failures_are_not_retried",
        ),
    ),
    Mutant(
        "foreign-pid-trusted",
        "a PID from another PID namespace (a reply over the socket) is never signalled",
        "spacetail/state/stopping.py",
        "stop_manager",
        "handle = ProvenProcess.open(ident) if ident is not None else None",
        # the PID the reply gives, taken as one of this namespace's
        "from spacetail.state.identity import ProcessIdentity\n"
        "    pid = p.status.manager_pid if p.status else None\n"
        "    local = ProcessIdentity.of(pid) if pid else None\n"
        "    handle = ProvenProcess.open(local) if local else None",
        (f"{PROMISES_FAULTS}::test_down_in_another_pid_namespace_never_signals_a_stranger",),
    ),
    Mutant(
        "failed-up-leaves-manager",
        "an up that fails (peers, signals) stops what it started: Running, or nothing left",
        "spacetail/commands/up.py",
        "up",
        "if joined.started_here:",
        "if False:",
        (f"{PROMISES_FAULTS}::test_up_whose_peer_never_answers_leaves_nothing",),
    ),
    Mutant(
        "joining-up-stops-manager",
        "an up that joined a running manager never stops it",
        "spacetail/commands/up.py",
        "_claim_manager",
        "return Joined(p.answering_ident, started_here=False)",
        "return Joined(p.answering_ident, started_here=True)",
        (f"{PROMISES_FAULTS}::test_a_second_up_with_a_short_timeout_does_not_stop_the_first",),
    ),
    Mutant(
        "frozen-tailscaled-stalls-loop",
        "a frozen tailscaled does not stretch up past its --timeout + 1 s",
        "spacetail/manager/login.py",
        "Login.tick",
        "if self.phase.logging_in and now >= self.deadline:",
        "if False:  # the deadline waits for tailscaled's word",
        (f"{PROMISES_FAULTS}::test_up_with_a_frozen_tailscaled_keeps_its_timeout",),
    ),
    Mutant(
        "status-asks-tailscaled",
        "no client stalls the manager: 50 status requests with a frozen tailscaled, 100 ms each",
        "spacetail/manager/service.py",
        "Manager.status",
        "node = self.node.replace(",
        # What asking the LocalAPI costs while tailscaled is frozen: its 0.5 s timeout.
        '__import__("time").sleep(0.5 if self.sup.current else 0); node = self.node.replace(',
        (f"{PROMISES_FAULTS}::test_a_frozen_tailscaled_never_stalls_an_answer",),
    ),
    Mutant(
        "no-relogin",
        "a logout behind the manager's back while Running logs in again",
        "spacetail/manager/login.py",
        "Login.on_state",
        'elif backend in ("NeedsLogin", "Stopped") and self.phase is Phase.RUNNING:',
        "elif False:",
        (f"{PROMISES_FAULTS}::test_logout_behind_the_managers_back_logs_in_again",),
    ),
    Mutant(
        "accept-spins",
        "out of descriptors the manager backs off instead of spinning",
        "spacetail/state/control.py",
        "ControlServer._accept",
        "self._paused_until = self.clock() + ACCEPT_PAUSE",
        "self._paused_until = self.clock()  # accept again at once",
        (f"{PROMISES_FAULTS}::test_out_of_descriptors_the_manager_backs_off",),
    ),
    Mutant(
        "forward-unbounded",
        "a forward holds at most 256 open connections; the next is closed at once and counted",
        "spacetail/forwards/relay.py",
        "_Loop._room",
        "full = fwd.stats.open >= self.o.budget.max_open",
        "full = fwd.stats.open >= self.o.budget.max_open * 100",
        ("tests/unit/test_relay.py::test_the_257th_connection_is_closed_at_once_and_counted",),
    ),
    Mutant(
        "forward-accept-spins",
        "out of descriptors a forward pauses accepting and logs once a pause, not a spin",
        "spacetail/forwards/relay.py",
        "_Loop._accept",
        "                    self._pause(fwd, exc)\n",
        '                    self._fail(fwd.stats, f"accept on {fwd.spec.listen}: {exc}")\n',
        (
            f"{FORWARD_FAULTS}::test_out_of_descriptors_the_forwarder_pauses_accepting_and_logs_once"
            "_a_pause",
        ),
    ),
    Mutant(
        "forward-cap-ignores-limit",
        "a forward's cap fits the descriptor limit it runs under (status says which)",
        "spacetail/forwards/fdbudget.py",
        "budget",
        "return Budget(max(1, min(max_open, per_forward)), soft, raised_from)",
        "return Budget(max_open, soft, raised_from)",
        (
            f"{FORWARD_FAULTS}::test_ulimit_1024_and_300_connections_no_spin_bounded_log_status"
            "_answers",
        ),
    ),
    Mutant(
        "forward-dial-pool",
        "a target that never answers does not delay another forward's connections",
        "spacetail/forwards/relay.py",
        "Forwarder._start_dial",
        "        thread.start()\n",
        "        thread.run()  # the dial on the data-plane thread: one slow dial stalls all\n",
        (
            f"{FORWARD_FAULTS}::test_a_blackholed_target_does_not_delay_another_forward_of_the"
            "_manager",
            "tests/unit/test_relay.py::test_blackholed_dials_do_not_delay_another_forward_and_end"
            "_in_time",
        ),
    ),
    Mutant(
        "forward-dial-unbounded",
        "a dial through a forward ends within its timeout, with the reason in last_error",
        "spacetail/forwards/relay.py",
        "_Loop._accept",
        "self.dialing[conn] = self.o.clock() + self.o.timing.dial_timeout",
        "self.dialing[conn] = self.o.clock() + 3600",
        (
            "tests/unit/test_relay.py::test_blackholed_dials_do_not_delay_another_forward_and_end"
            "_in_time",
        ),
    ),
    Mutant(
        "forward-passes-client-eof",
        "a forward whose client half-closes keeps the reply flowing",
        "spacetail/forwards/connection.py",
        "Connection._flush",
        "            if side == TARGET:\n",
        "            if True:\n",
        (
            "tests/integration/test_forward_real.py::test_a_request_then_eof_gets_its_late_reply"
            "_through_a_forward_and_nc",
        ),
    ),
    Mutant(
        "nc-passes-eof",
        "nc keeps reading after the end of its input; only -N passes the EOF on",
        "spacetail/commands/nc.py",
        "_up",
        "        if send_eof:\n",
        "        if True:\n",
        (
            "tests/integration/test_forward_real.py::test_a_request_then_eof_gets_its_late_reply"
            "_through_a_forward_and_nc",
        ),
    ),
    Mutant(
        "refused-flag-retried",
        "a command line tailscale refuses fails within 5 s naming the setting (exit 2)",
        "spacetail/manager/login.py",
        "Login.on_up_exit",
        "if failure.kind in (FailureClass.USAGE, FailureClass.LOCAL):",
        "if False:",
        ("tests/integration/test_fail_fast.py::test_a_refused_flag_fails_at_once_with_exit_2",),
    ),
    Mutant(
        "credential-in-environ",
        "no credential in the manager's /proc/PID/environ",
        "spacetail/manager/daemon.py",
        "scrub_environ",
        '    try:\n        with open("/proc/self/stat", "rb") as f:',
        '    return True\n    try:\n        with open("/proc/self/stat", "rb") as f:',
        ("tests/faults/test_attacks.py::test_no_credential_in_any_process_environment",),
    ),
    Mutant(
        "install-trusts-the-server",
        "install-tailscale checks the package against the pinned sha256, never the server's",
        "spacetail/install/installer.py",
        "_fetch",
        "    expected = job.checksum.value\n",
        "    expected = None\n",
        (
            "tests/unit/test_install.py::"
            "test_a_substituted_package_with_a_matching_sha256_file_is_refused",
            "tests/integration/test_install_mirror.py::"
            "test_a_substituted_package_with_a_matching_sha256_is_refused",
        ),
    ),
    Mutant(
        "install-no-deadline",
        "install-tailscale gives up at its deadline, however slowly a mirror sends",
        "spacetail/install/package.py",
        "Deadline.check",
        "if self.remaining() <= 0:",
        "if False:",
        (
            "tests/faults/test_install_faults.py::"
            "test_a_slow_mirror_cannot_keep_install_running_past_its_deadline",
        ),
    ),
    Mutant(
        "install-unbounded-members",
        "install-tailscale refuses an archive of more members than a tailscale package has",
        "spacetail/install/package.py",
        "_members",
        "if count > MAX_MEMBERS:",
        "if False:",
        (
            "tests/faults/test_install_faults.py::"
            "test_an_archive_of_many_members_is_refused_in_bounded_memory",
        ),
    ),
    Mutant(
        "reply-identity-trusted",
        "a status reply makes a process eligible for a signal only if manager.json names it",
        "spacetail/state/stopping.py",
        "stop_manager",
        "    ident = p.proven_ident\n",
        "    ident = p.answering_ident if not p.foreign else None\n",
        (f"{TRUST}::test_a_reply_names_a_process_for_a_signal_only_with_the_managers_record",),
    ),
    Mutant(
        "server-uid-unchecked",
        "a control socket another user serves is never listened to",
        "spacetail/state/control.py",
        "ControlClient._check_server",
        "if uid not in (me, 0) and me != 0:",
        "if False:",
        (f"{TRUST}::test_a_socket_another_user_serves_is_never_listened_to",),
    ),
    Mutant(
        "folders-unchecked",
        "every command checks the state and runtime folders as `up` does before trusting them",
        "spacetail/state/statedir.py",
        "check",
        "elif not check_existing_dir(folder, setting) and folder == paths.root:",
        "elif not folder.is_dir() and folder == paths.root:",
        (
            f"{TRUST}::test_down_never_signals_for_a_socket_another_user_planted",
            f"{TRUST}::test_env_wait_and_status_never_take_another_users_socket_for_the_manager",
            f"{TRUST}::test_down_never_removes_files_where_a_planted_key_folder_points",
        ),
    ),
    Mutant(
        "host-proc-trusted",
        "where /proc numbers another PID namespace, up starts nothing",
        "spacetail/state/identity.py",
        "refuse_foreign_proc",
        "    problem = proc_mismatch()\n",
        "    problem = None\n",
        ("tests/faults/test_host_proc.py::test_up_refuses_where_proc_is_not_the_namespaces",),
    ),
    Mutant(
        "oauth-client-id-dropped",
        "TS_CLIENT_ID with TS_CLIENT_SECRET reaches tailscale up as containerboot passes it",
        "spacetail/tailnet/tailscale.py",
        "up_argv",
        "if auth.client_id:",
        'if auth.kind == "wif":',
        (
            "tests/unit/test_credentials.py::test_containerboot_accepts",
            "tests/integration/test_auth.py::test_the_oauth_client_pair_people_already_use",
        ),
    ),
    Mutant(
        "read-phase-borrows-write",
        "a read-scope phase never presents the write identity, whatever else is set",
        "spacetail/config/scope.py",
        "View.get",
        "names.insert(0, self.scope.name_of(base))",
        "names[:0] = [self.scope.name_of(base), self.scope.other.name_of(base)]",
        (
            "tests/unit/test_credentials.py::test_a_read_phase_never_presents_the_write_identity",
            "tests/unit/test_credentials.py::"
            "test_a_phase_without_an_identity_of_its_scope_fails_naming_the_missing_setting",
            "tests/e2e/test_least_privilege.py::"
            "test_a_read_phase_with_only_the_write_identity_fails_before_terraform",
        ),
    ),
    Mutant(
        "scope-ignored",
        "the token's scope chooses the identity and the tags of the phase",
        "spacetail/config/credentials.py",
        "auth_from_env",
        "view = View(env, scope)",
        "view = View(env, None)",
        (
            "tests/unit/test_credentials.py::test_the_token_scope_chooses_the_identity_and_the_tags",
            "tests/e2e/test_least_privilege.py::"
            "test_a_run_that_waits_for_approval_plans_read_and_applies_write",
        ),
    ),
    Mutant(
        "doctor-silent-on-write-secret",
        "doctor warns when a read-scope phase holds a write credential",
        "spacetail/doctor/credential_findings.py",
        "write_credential_check",
        "held = [name for name in held if name not in read]",
        "held = []",
        (
            "tests/unit/test_doctor.py::"
            "test_a_read_scope_phase_holding_a_write_credential_is_warned",
        ),
    ),
    Mutant(
        "progress-on-stdout",
        "while up waits, its progress lines go to stderr; stdout is the export lines only",
        "spacetail/progress.py",
        "Progress.say",
        "say(self.out, text)",
        'print(f"spacetail: {text}", flush=True)',
        (
            "tests/integration/test_progress.py::"
            "test_a_slow_login_prints_progress_on_stderr_and_only_exports_on_stdout",
        ),
    ),
    Mutant(
        "progress-silent-wait",
        "while up waits, a line every 5 s says where the login stands",
        "spacetail/state/verdict.py",
        "await_verdict",
        "timeout = progress.slice(left)",
        "timeout = left",
        (
            "tests/integration/test_progress.py::"
            "test_a_slow_login_prints_progress_on_stderr_and_only_exports_on_stdout",
            "tests/unit/test_progress.py::test_the_wait_is_asked_an_interval_at_a_time_with_a_line_each",
        ),
    ),
    Mutant(
        "wait-for-not-retried",
        "up --wait-for returns once every target answers, retried within --timeout",
        "spacetail/tailnet/ready.py",
        "_Asking.settle",
        "self.due_at[name] = self.clock() + PAUSE",
        "self.due_at[name] = math.inf  # one try, never again",
        ("tests/integration/test_wait_for.py::test_up_returns_once_every_target_answers",),
    ),
    Mutant(
        "wait-for-failure-leaves-manager",
        "a failed up --wait-for leaves nothing running",
        "spacetail/commands/up.py",
        "up",
        "if joined.started_here:  # outside _interrupts",
        "if joined.started_here and reply is None:  # outside _interrupts",
        (
            "tests/integration/test_wait_for.py::"
            "test_a_target_that_never_answers_fails_up_naming_it_and_leaves_nothing",
        ),
    ),
    Mutant(
        "targets-asked-in-turn",
        "while up waits for targets, a silent one delays neither another nor the line every 5 s",
        "spacetail/tailnet/ready.py",
        "_Asking.launch",
        "self.start(functools.partial(self._ask, name, deadline - now))",
        "self._ask(name, deadline - now)  # in turn, in the waiting thread",
        (
            "tests/unit/test_targets.py::test_silent_targets_never_hold_up_another_nor_the_line",
            "tests/faults/test_waiting_faults.py::test_ten_silent_targets_still_get_a_line_every_5s",
        ),
    ),
    Mutant(
        "wait-blind-to-its-manager",
        "up and wait --target fail at once with the manager's ending when it ends while they wait",
        "spacetail/state/lookup.py",
        "ending",
        "if ident is not None and ident.alive() and not _zombie(ident.pid):",
        "if True:  # the manager is never looked at again",
        (
            "tests/faults/test_waiting_faults.py::"
            "test_a_manager_dying_while_up_waits_ends_up_at_once",
        ),
    ),
    Mutant(
        "run-keeps-the-credentials-above-the-command",
        "no process of spacetail's in the command's ancestry holds a credential",
        "spacetail/commands/run.py",
        "_exec_clean",
        "json.dumps(payload)], env)",
        "json.dumps(payload)], {**os.environ, **env})",
        (f"{ATTACKS_THREE}::test_no_process_of_spacetail_above_the_command_holds_a_credential",),
    ),
    Mutant(
        "read-phase-compares-by-name",
        "a read phase never presents the write identity, compared by value",
        "spacetail/config/credentials.py",
        "_presented",
        'return value.partition("?")[0].strip() or None',
        "return raw",
        (
            f"{ATTACKS_THREE}::test_a_read_phase_never_presents_the_write_identity_by_value",
            "tests/unit/test_credentials.py::test_a_read_phase_compares_what_it_presents_by_value",
        ),
    ),
    Mutant(
        "status-unredacted",
        "no secret in spacetail's output: tailscale's words quoting one are redacted in the status",
        "spacetail/manager/service.py",
        "Manager._problem",
        "return said.replace(reason=r.optional(said.reason), advice=r.optional(said.advice))",
        "return said",
        ("tests/faults/test_attacks.py::test_secrets_tailscale_quotes_are_redacted_at_every_exit",),
    ),
)
