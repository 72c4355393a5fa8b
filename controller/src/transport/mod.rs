//! Southbound transports: how rampartd reaches devices.
