//! claudemesh-broker: the server that authenticates members, keeps presence, routes
//! end-to-end encrypted messages, and hosts services, vaults and skills (DESIGN §2).
