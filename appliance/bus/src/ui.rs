//! `org.kioskcall.Ui1`: kiosk-ui, the touch screen and the customer journey.
//!
//! - [`Ui1Proxy::screen`]: the screen shown now, one of [`screen`]; it changes with the
//!   journey and with the kiosk's state (not enrolled, cloud link down).
//! - [`Ui1Proxy::language`]: the screen's language, a BCP 47 tag (`en`, `fr`, `ar`).
//! - [`Ui1Proxy::reset`]: a privacy reset now: the customer's session ends (kiosk-sync is
//!   told with `EndJourney`), any call placed or running is ended, and the screen reloads on
//!   the attract loop in the default language with nothing of the last customer left.
//!
//! Both properties emit `PropertiesChanged`, so a client can follow the journey.

/// The well-known bus name kiosk-ui owns.
pub const NAME: &str = "org.kioskcall.Ui1";
/// The object path of the interface.
pub const PATH: &str = "/org/kioskcall/Ui1";
/// The interface name.
pub const INTERFACE: &str = "org.kioskcall.Ui1";

/// Screens, as the `Screen` property spells them.
pub mod screen {
    /// The kiosk waits for an admin to claim it; the activation code is shown large.
    pub const ACTIVATION: &str = "activation";
    /// Not enrolled yet, or enrolled without a configuration: "being set up".
    pub const SETUP: &str = "setup";
    /// The cloud link is down or kiosk-sync is not on the bus.
    pub const UNAVAILABLE: &str = "unavailable";
    /// The attract loop: one call to action and the language choice.
    pub const ATTRACT: &str = "attract";
    /// The site is closed now: the next opening and an offer to be called back.
    pub const CLOSED: &str = "closed";
    /// The phone number on a keypad.
    pub const PHONE: &str = "phone";
    /// The one-time code on a keypad.
    pub const CODE: &str = "code";
    /// The recording notice, yes or no.
    pub const CONSENT: &str = "consent";
    /// The call is placed and waits for an agent (position and estimated wait).
    pub const QUEUE: &str = "queue";
    /// In a call.
    pub const CALL: &str = "call";
    /// The call could not be placed or broke off.
    pub const CALL_FAILED: &str = "call_failed";
    /// Nobody answered in time.
    pub const NO_ANSWER: &str = "no_answer";
    /// The offer of a callback after a call nobody answered.
    pub const CALLBACK_OFFER: &str = "callback_offer";
    /// A callback is booked.
    pub const BOOKED: &str = "booked";
    /// A callback could not be booked.
    pub const CALLBACK_FAILED: &str = "callback_failed";
    /// The 1–3 satisfaction survey after a call.
    pub const SURVEY: &str = "survey";
    /// Thanks, shortly before the privacy reset.
    pub const THANKS: &str = "thanks";
}

/// Client side of `org.kioskcall.Ui1`.
#[zbus::proxy(
    interface = "org.kioskcall.Ui1",
    default_service = "org.kioskcall.Ui1",
    default_path = "/org/kioskcall/Ui1"
)]
pub trait Ui1 {
    /// A privacy reset now (see the module doc).
    fn reset(&self) -> zbus::Result<()>;

    /// One of [`screen`].
    #[zbus(property)]
    fn screen(&self) -> zbus::Result<String>;

    /// The screen's language, a BCP 47 tag.
    #[zbus(property)]
    fn language(&self) -> zbus::Result<String>;
}
