pub mod agent;
pub mod board;
pub mod camera;
pub mod encoder;
pub mod frames;
pub mod peer;
pub mod session;
pub mod settings;
pub mod stamp;
pub mod stats;

pub use agent::{AgentPlan, AgentSim};
pub use peer::{Counters, MediaEvent, Milestone, RemoteVideoSink, SessionError};
pub use session::{CallPlan, CallSession, EndReport};
