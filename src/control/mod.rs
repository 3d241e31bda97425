//! The control socket, its commands and the `-i`/`-c` client. (Being built:
//! see issue #3.)
