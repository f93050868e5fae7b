//! claudemesh-agent: the long-lived local daemon that holds broker connections and keys and
//! serves the Unix socket every local client talks to (DESIGN §2, §10).
