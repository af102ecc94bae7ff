//! kiosk-media: camera, encoder and board media profile for the kiosk's calls.

pub mod board;
pub mod camera;
pub mod encoder;
