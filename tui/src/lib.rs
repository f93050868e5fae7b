//! claudemesh-tui: the ratatui dashboard over the agent's socket (DESIGN §2).
