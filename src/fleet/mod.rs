//! Fleet mode: instances of one service share health verdicts, operator
//! state and channel lists through etcd.

pub mod etcd;
