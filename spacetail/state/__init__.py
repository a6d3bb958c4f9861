"""The ground every command and the manager share: where files live, the state folder and its
checks, who a process is, the typed status and its records, the control socket, the last stop."""
