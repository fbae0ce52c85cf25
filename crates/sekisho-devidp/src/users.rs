//! Demo users. **Development only**: their passwords are published in this file, in
//! `demo.json` and on the login page.

use std::fmt;

use serde::Serialize;

/// `acr` of a password-only sign-in.
pub const ACR_PWD: &str = "urn:sekisho:acr:pwd";
/// `acr` of a sign-in with password and one-time password (step-up).
pub const ACR_MFA: &str = "urn:sekisho:acr:mfa";

/// A user of the development IdP.
///
/// `Serialize` includes the password on purpose (for `demo.json`); `Debug` redacts it.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct DemoUser {
    /// Login name; also the `sub` and `preferred_username` claims.
    pub username: String,
    /// Development password (published; never a real one).
    pub password: String,
    /// Display name (`name` claim), e.g. `田中 花子`.
    pub name: String,
    pub email: String,
    /// `groups` claim.
    pub groups: Vec<String>,
    /// Whether the user has a second factor: only then may a sign-in set
    /// `amr: [pwd, otp]` and `acr` [`ACR_MFA`].
    pub mfa: bool,
    /// A short role description for the login page, e.g. `職員 / staff`.
    pub role: String,
}

impl fmt::Debug for DemoUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemoUser")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .field("name", &self.name)
            .field("email", &self.email)
            .field("groups", &self.groups)
            .field("mfa", &self.mfa)
            .field("role", &self.role)
            .finish()
    }
}

fn user(username: &str, name: &str, role: &str, groups: &[&str], mfa: bool) -> DemoUser {
    DemoUser {
        username: username.into(),
        password: format!("{username}-demo"),
        name: name.into(),
        email: format!("{username}@town.example.lg.jp"),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        mfa,
        role: role.into(),
    }
}

/// The demo users, **for development and demos only** (the password of each is
/// `<username>-demo`):
///
/// | user | name | groups | MFA |
/// |---|---|---|---|
/// | `tanaka` | 田中 花子 (staff) | `staff`, `lgwan-users` | yes |
/// | `suzuki` | 鈴木 一郎 (staff) | `staff` | no |
/// | `sato` | 佐藤 美咲 (auditor) | `auditors` | yes |
/// | `yamada` | 山田 太郎 (contractor, ACME) | `contractor-acme` | no |
pub fn demo_users() -> Vec<DemoUser> {
    vec![
        user(
            "tanaka",
            "田中 花子",
            "職員（MFA 登録済み） / staff with MFA",
            &["staff", "lgwan-users"],
            true,
        ),
        user(
            "suzuki",
            "鈴木 一郎",
            "職員（MFA 未登録） / staff without MFA",
            &["staff"],
            false,
        ),
        user(
            "sato",
            "佐藤 美咲",
            "監査担当 / auditor",
            &["auditors"],
            true,
        ),
        user(
            "yamada",
            "山田 太郎",
            "委託事業者（ACME） / contractor",
            &["contractor-acme"],
            false,
        ),
    ]
}
