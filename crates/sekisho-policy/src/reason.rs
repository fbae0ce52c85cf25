//! Reasons a person can read, in Japanese and English, each with a stable code for
//! the audit log and metrics. Every reason is phrased as a cause: it is shown when
//! access is refused or more is asked of the user (login, certificate, step-up).

/// One reason for a decision.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Reason {
    /// Stable, dotted, lower-case: `device.unmanaged`. Safe as a metric label.
    pub code: &'static str,
    pub ja: &'static str,
    pub en: &'static str,
}

macro_rules! reasons {
    ($($name:ident = $code:literal, $ja:literal, $en:literal;)*) => {
        $(pub const $name: &Reason = &Reason { code: $code, ja: $ja, en: $en };)*
        /// Every reason this crate can give.
        pub const ALL: &[&Reason] = &[$($name),*];
    };
}

reasons! {
    ALLOWED = "policy.allowed", "ポリシーにより許可されました", "Access is permitted by the policy";
    NO_ALLOW_RULE = "policy.no_allow_rule", "このサービスには許可ルールがありません", "No allow rule exists for this service";
    NO_RULE_MATCHED = "policy.no_rule_matched", "利用条件を満たしていません", "The request does not meet any allow rule";
    DENY_RULE = "policy.deny_rule", "拒否ルールに該当しました", "A deny rule applies to this request";
    ANYONE = "policy.anyone", "すべての利用者が対象のルールに該当しました", "A rule that applies to everyone matched";
    LOGIN_REQUIRED = "identity.login_required", "ログインが必要です", "You need to sign in";
    AUTHENTICATED = "identity.authenticated", "ログイン済みの利用者は利用できません", "Signed-in users may not use this";
    USER_LISTED = "user.listed", "この利用者は利用を禁止されています", "This user is barred from this service";
    USER_NOT_LISTED = "user.not_listed", "この利用者には利用が許可されていません", "This user is not permitted to use this service";
    EMAIL_DOMAIN_LISTED = "user.email_domain_listed", "このメールドメインの利用者は利用できません", "Users of this e-mail domain may not use this service";
    EMAIL_DOMAIN_NOT_LISTED = "user.email_domain_not_listed", "このメールドメインの利用者には許可されていません", "Users of this e-mail domain are not permitted";
    GROUP_MEMBER = "group.member", "所属グループにより利用が禁止されています", "A group you belong to is barred from this service";
    GROUP_NOT_MEMBER = "group.not_member", "必要なグループに所属していません", "You are not in a group that is permitted";
    CLAIM_MATCH = "claim.match", "利用者の属性により利用が禁止されています", "An attribute of your account bars you from this service";
    CLAIM_MISMATCH = "claim.mismatch", "利用者の属性が利用条件を満たしていません", "An attribute of your account does not meet the conditions";
    MFA_PRESENT = "mfa.present", "多要素認証済みの利用は禁止されています", "Use after multi-factor authentication is barred";
    MFA_REQUIRED = "mfa.required", "多要素認証が必要です", "Multi-factor authentication is required";
    ACR_MATCH = "acr.match", "この認証レベルでは利用できません", "This authentication level is barred";
    ACR_INSUFFICIENT = "acr.insufficient", "認証レベルが不足しています", "A stronger authentication level is required";
    AUTH_FRESH = "auth.fresh", "直近に認証した利用は禁止されています", "Recently authenticated use is barred";
    AUTH_TOO_OLD = "auth.too_old", "前回の認証から時間が経っています。もう一度ログインしてください", "Your last sign-in is too long ago; please sign in again";
    CERT_PRESENT = "certificate.present", "端末証明書のある端末からは利用できません", "Devices with a certificate may not use this";
    CERT_REQUIRED = "certificate.required", "端末証明書が必要です。市の管理端末から接続してください", "A device certificate is required; connect from a municipal device";
    CERT_INVALID = "certificate.invalid", "端末証明書が無効です(期限切れ・失効など)", "The device certificate is not valid (expired, revoked or unknown)";
    POSTURE_UNKNOWN = "posture.unknown", "端末の状態を確認できません", "The device's security state is unknown";
    DEVICE_LISTED = "device.listed", "この端末からの利用は禁止されています", "This device is barred from this service";
    DEVICE_NOT_LISTED = "device.not_listed", "この端末には利用が許可されていません", "This device is not permitted to use this service";
    MANAGED = "device.managed", "管理対象端末からは利用できません", "Managed devices may not use this service";
    UNMANAGED = "device.unmanaged", "この端末は管理対象外です", "This device is not managed by the municipality";
    COMPLIANT = "device.compliant", "セキュリティ基準を満たす端末からは利用できません", "Compliant devices may not use this service";
    NONCOMPLIANT = "device.noncompliant", "この端末はセキュリティ基準を満たしていません", "This device does not meet the security baseline";
    DISK_ENCRYPTED = "device.disk_encrypted", "ディスク暗号化済みの端末からは利用できません", "Devices with disk encryption may not use this";
    DISK_NOT_ENCRYPTED = "device.disk_not_encrypted", "この端末のディスクが暗号化されていません", "This device's disk is not encrypted";
    SCREEN_LOCK_ON = "device.screen_lock_on", "画面ロックが有効な端末からは利用できません", "Devices with screen lock may not use this";
    SCREEN_LOCK_OFF = "device.screen_lock_off", "この端末に画面ロックが設定されていません", "This device has no screen lock";
    FIREWALL_ON = "device.firewall_on", "ファイアウォールが動作している端末からは利用できません", "Devices with a firewall may not use this";
    FIREWALL_OFF = "device.firewall_off", "この端末のファイアウォールが動作していません", "This device's firewall is not running";
    ANTIVIRUS_ON = "device.antivirus_on", "ウイルス対策ソフトが動作している端末からは利用できません", "Devices with antivirus may not use this";
    ANTIVIRUS_OFF = "device.antivirus_off", "この端末のウイルス対策ソフトが動作していません", "This device's antivirus is not running";
    EDR_ON = "device.edr_on", "EDRが動作している端末からは利用できません", "Devices with EDR may not use this";
    EDR_OFF = "device.edr_off", "この端末のEDRが動作していません", "This device's EDR agent is not running";
    CORPORATE = "device.corporate", "組織所有の端末からは利用できません", "Corporate devices may not use this service";
    BYOD = "device.byod", "個人所有の端末(BYOD)からは利用できません", "Personal devices (BYOD) may not use this service";
    OS_LISTED = "device.os_listed", "このOSの端末からは利用できません", "Devices with this operating system are barred";
    OS_NOT_ALLOWED = "device.os_not_allowed", "この端末のOSは許可されていません", "This device's operating system is not permitted";
    OS_VERSION_OK = "device.os_version_in_range", "このOSバージョンの端末からは利用できません", "Devices with this OS version are barred";
    OS_OUTDATED = "device.os_outdated", "OSのバージョンが古すぎます。更新してください", "The operating system is out of date; please update it";
    OS_TOO_NEW = "device.os_too_new", "OSのバージョンが検証済みの範囲を超えています", "The operating system version has not been validated yet";
    CHECK_IN_RECENT = "device.check_in_recent", "最近管理サーバーに接続した端末からは利用できません", "Recently checked-in devices may not use this";
    CHECK_IN_STALE = "device.check_in_stale", "この端末はしばらく管理サーバーに接続していません", "This device has not checked in with device management recently";
    TAG_LISTED = "device.tag_listed", "この端末のタグにより利用が禁止されています", "A tag of this device bars it from this service";
    TAG_MISSING = "device.tag_missing", "この端末には必要なタグがありません", "This device lacks a required tag";
    NETWORK_LISTED = "network.listed", "このネットワークからは利用できません", "Access from this network is not permitted";
    NETWORK_OUTSIDE = "network.outside", "許可されたネットワークからの接続ではありません", "The connection does not come from a permitted network";
    TIME_IN_WINDOW = "time.in_window", "この時間帯は利用できません", "Access is not permitted at this time";
    TIME_OUTSIDE_HOURS = "time.outside_hours", "利用できる時間帯ではありません(夜間など)", "Access is outside the permitted hours";
    TIME_WEEKDAY = "time.weekday", "本日は利用できる曜日ではありません", "Access is not permitted on this day of the week";
    TIME_HOLIDAY = "time.holiday", "休日(祝日など)は利用できません", "Access is not permitted on holidays";
    TIME_NOT_LISTED_DATE = "time.date_not_listed", "本日は利用できる日ではありません", "Access is not permitted on this date";
    METHOD_LISTED = "method.listed", "この操作は禁止されています", "This kind of request (HTTP method) is barred";
    METHOD_NOT_ALLOWED = "method.not_allowed", "この操作は許可されていません", "This kind of request (HTTP method) is not permitted";
    PATH_LISTED = "path.listed", "このページへのアクセスは禁止されています", "Access to this path is barred";
    PATH_NOT_ALLOWED = "path.not_allowed", "このページへのアクセスは許可されていません", "Access to this path is not permitted";
    ZONE_LISTED = "zone.listed", "このゾーンからは利用できません", "Access through this zone is barred";
    ZONE_NOT_ALLOWED = "zone.not_allowed", "このゾーンからの利用は許可されていません", "Access through this zone is not permitted";
    ROUTE_LISTED = "route.listed", "このサービスへのアクセスは禁止されています", "Access to this service is barred";
    ROUTE_NOT_ALLOWED = "route.not_allowed", "このサービスへのアクセスは許可されていません", "Access to this service is not permitted";
}

/// Look a reason up by its code.
pub fn by_code(code: &str) -> Option<&'static Reason> {
    ALL.iter().copied().find(|r| r.code == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_well_formed() {
        let mut codes: Vec<_> = ALL.iter().map(|r| r.code).collect();
        codes.sort();
        let n = codes.len();
        codes.dedup();
        assert_eq!(codes.len(), n, "duplicate reason code");
        for r in ALL {
            assert!(
                r.code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_'),
                "{}",
                r.code
            );
            assert!(!r.ja.is_ascii(), "{} has no Japanese text", r.code);
            assert!(r.en.is_ascii(), "{}", r.code);
        }
    }
}
