// The app's words in English and Chinese: one table, one key per string. Markup names its
// strings with data-i18n (text), data-i18n-label (aria-label); code calls t(key, values).
// The chosen language is kept in localStorage and set as <html lang>, so screen readers
// pronounce each language correctly.

export const STRINGS = {
  en: {
    app_title: "Turnpike rider",
    skip: "Skip to content",
    switch_language: "中文",
    switch_language_label: "切换到中文",
    nav_label: "Sections",
    nav_code: "Ride code",
    nav_journeys: "Journeys",
    nav_wallet: "Wallet",
    online: "Online",
    offline: "Offline: your ride code still works; lists show what was last loaded.",
    enrol_title: "Set up this phone",
    enrol_text:
      "This phone makes its own signing key, which never leaves it. Turnpike gives the phone a credential for that key; the ride codes you show at the gate are signed with it, with or without a network.",
    enrol_button: "Register and set up this phone",
    enrolling: "Setting up…",
    enrol_failed: "Setting up failed: {error}",
    code_title: "Your ride code",
    code_help: "Hold the code to the gate's scanner. It renews every few seconds; a photo of it is useless a minute later.",
    qr_label: "Ride code for rider {rider}, made at {time}",
    code_made: "Made at {time}; good for {left} s more; a new code in {next} s.",
    rider_id: "Rider",
    credential_until: "This phone's credential is valid until",
    credential_expired: "This phone's credential has expired. Connect to the network to renew it.",
    renewed: "Credential renewed.",
    journeys_title: "Journeys",
    refresh: "Refresh",
    loading: "Loading…",
    load_failed: "Could not load: {error}",
    no_network: "no network",
    shown_from_cache: "Offline: showing what was loaded at {time}.",
    no_journeys: "No journeys yet.",
    journeys_caption: "Your journeys, newest first",
    cap_label: "Daily cap of {operator} on {day}",
    cap_text: "{charged} of the {cap} daily cap of {operator} today; {remaining} more at most.",
    col_when: "When",
    col_route: "From → to",
    col_fare: "Fare",
    col_charge: "Payment",
    col_actions: "Actions",
    open_journey: "in progress",
    incomplete: "no exit: maximum fare",
    charge_pending: "to be paid",
    charge_paying: "paying",
    charge_captured: "paid",
    charge_failed: "failed: owed",
    charge_cancelled: "cancelled",
    charge_refunded: "refunded {amount}",
    no_charge: "—",
    dispute: "Dispute",
    dispute_label: "Dispute the charge of the journey {route}",
    receipt: "Receipt",
    receipt_label: "Receipt of the journey {route}",
    disputes_title: "Disputes",
    no_disputes: "No disputes.",
    dispute_item: "{amount} charge of {day}: {status}. “{reason}”",
    dispute_status_open: "waiting for a decision",
    dispute_status_approved: "approved, refunded",
    dispute_status_rejected: "rejected",
    dispute_note: "Note: {note}",
    dispute_form_title: "Dispute a charge",
    dispute_reason: "What went wrong?",
    dispute_send: "Send dispute",
    cancel: "Cancel",
    dispute_sent: "Dispute sent.",
    dispute_failed: "The dispute was not sent: {error}",
    wallet_title: "Wallet",
    wallet_unbound: "No wallet is bound. Journeys are paid from a bound wallet after each trip.",
    wallet_signing: "Waiting for you to sign the agreement in the wallet.",
    wallet_bound: "Wallet bound (agreement {agreement}).",
    bind_wallet: "Bind a wallet",
    sign_link: "Open the wallet to sign the payment agreement",
    check_again: "Check again",
    gates_title: "At the gates",
    gates_accept: "Gates accept your ride code.",
    gates_refuse: "Gates refuse your ride code:",
    see_wallet: "see Wallet.",
    deny_rider: "your account, since {time}: {reason}",
    deny_credential: "this or another of your devices (credential {id}), since {time}: {reason}",
    deny_reason_arrears: "a payment failed; it is lifted by itself once the arrears are paid",
    arrears_title: "Arrears",
    arrears_none: "Nothing owed.",
    arrears_owed: "You owe {amount} from {count} failed payment(s). Until it is repaid, gates refuse your code.",
    repay: "Repay now",
    repay_done: "{count} payment(s) sent for collection again.",
    receipt_title: "Receipt",
    receipt_print: "Print",
    receipt_back: "Back to journeys",
    receipt_operator: "Operator",
    receipt_journey: "Journey",
    receipt_amount: "Amount",
    receipt_status: "Status",
    receipt_day: "Business day",
    receipt_trade: "Provider trade number",
    receipt_paid_at: "Paid at",
    receipt_charge: "Charge",
    receipt_missing: "No such charge among yours.",
    receipt_rider: "Rider",
    receipt_printed: "Printed",
    notices_title: "Notifications",
    notices_dismiss: "Dismiss",
    notice_failed: "The payment of {amount} for {day} failed. Gates refuse your code until it is repaid: see Wallet.",
    notice_repaid: "The payment of {amount} for {day} went through.",
    notice_refund: "{amount} refunded for your journey of {day}.",
    notice_denied: "Gates now refuse your ride code: {reason}",
    notice_lifted: "Gates accept your ride code again.",
    footer: "Turnpike: one phone for metro and toll.",
  },
  zh: {
    app_title: "Turnpike 乘客",
    skip: "跳到正文",
    switch_language: "English",
    switch_language_label: "Switch to English",
    nav_label: "栏目",
    nav_code: "乘车码",
    nav_journeys: "行程",
    nav_wallet: "钱包",
    online: "在线",
    offline: "离线：乘车码仍然可用；列表显示上次加载的内容。",
    enrol_title: "设置本机",
    enrol_text:
      "本机生成自己的签名密钥，密钥不会离开手机。Turnpike 为该密钥签发凭证；您在闸机出示的乘车码由它签名，有无网络均可使用。",
    enrol_button: "注册并设置本机",
    enrolling: "正在设置…",
    enrol_failed: "设置失败：{error}",
    code_title: "您的乘车码",
    code_help: "将乘车码对准闸机扫描口。乘车码每隔几秒更新；截图一分钟后即失效。",
    qr_label: "乘客 {rider} 的乘车码，生成于 {time}",
    code_made: "生成于 {time}；还可使用 {left} 秒；{next} 秒后更新。",
    rider_id: "乘客",
    credential_until: "本机凭证有效期至",
    credential_expired: "本机凭证已过期。请联网更新。",
    renewed: "凭证已更新。",
    journeys_title: "行程",
    refresh: "刷新",
    loading: "加载中…",
    load_failed: "无法加载：{error}",
    no_network: "没有网络",
    shown_from_cache: "离线：显示 {time} 加载的内容。",
    no_journeys: "暂无行程。",
    journeys_caption: "您的行程，最新的在前",
    cap_label: "{operator} {day} 的每日封顶",
    cap_text: "今天在 {operator} 已扣 {charged}，每日封顶 {cap}；最多还会扣 {remaining}。",
    col_when: "时间",
    col_route: "起点 → 终点",
    col_fare: "票价",
    col_charge: "支付",
    col_actions: "操作",
    open_journey: "进行中",
    incomplete: "未出站：按最高票价",
    charge_pending: "待扣款",
    charge_paying: "扣款中",
    charge_captured: "已支付",
    charge_failed: "扣款失败：欠款",
    charge_cancelled: "已取消",
    charge_refunded: "已退款 {amount}",
    no_charge: "—",
    dispute: "申诉",
    dispute_label: "申诉行程 {route} 的扣款",
    receipt: "收据",
    receipt_label: "行程 {route} 的收据",
    disputes_title: "申诉",
    no_disputes: "暂无申诉。",
    dispute_item: "{day} 的 {amount} 扣款：{status}。“{reason}”",
    dispute_status_open: "等待处理",
    dispute_status_approved: "已批准，已退款",
    dispute_status_rejected: "已驳回",
    dispute_note: "说明：{note}",
    dispute_form_title: "申诉扣款",
    dispute_reason: "出了什么问题？",
    dispute_send: "提交申诉",
    cancel: "取消",
    dispute_sent: "申诉已提交。",
    dispute_failed: "申诉未提交：{error}",
    wallet_title: "钱包",
    wallet_unbound: "尚未绑定钱包。每次行程后从绑定的钱包扣款。",
    wallet_signing: "等待您在钱包中签署代扣协议。",
    wallet_bound: "钱包已绑定（协议 {agreement}）。",
    bind_wallet: "绑定钱包",
    sign_link: "打开钱包签署代扣协议",
    check_again: "再次检查",
    gates_title: "闸机",
    gates_accept: "闸机接受您的乘车码。",
    gates_refuse: "闸机拒绝您的乘车码：",
    see_wallet: "详见“钱包”。",
    deny_rider: "您的账户，自 {time} 起：{reason}",
    deny_credential: "您的设备（凭证 {id}），自 {time} 起：{reason}",
    deny_reason_arrears: "扣款失败；还清欠款后自动解除",
    arrears_title: "欠款",
    arrears_none: "没有欠款。",
    arrears_owed: "您有 {count} 笔扣款失败，共欠 {amount}。还清之前闸机将拒绝您的乘车码。",
    repay: "立即还款",
    repay_done: "已重新发起 {count} 笔扣款。",
    receipt_title: "收据",
    receipt_print: "打印",
    receipt_back: "返回行程",
    receipt_operator: "运营方",
    receipt_journey: "行程",
    receipt_amount: "金额",
    receipt_status: "状态",
    receipt_day: "营业日",
    receipt_trade: "支付机构交易号",
    receipt_paid_at: "支付时间",
    receipt_charge: "扣款",
    receipt_missing: "您的扣款中没有这一笔。",
    receipt_rider: "乘客",
    receipt_printed: "打印时间",
    notices_title: "通知",
    notices_dismiss: "知道了",
    notice_failed: "{day} 的 {amount} 扣款失败。还清之前闸机将拒绝您的乘车码，详见“钱包”。",
    notice_repaid: "{day} 的 {amount} 扣款已成功。",
    notice_refund: "您 {day} 的行程已退款 {amount}。",
    notice_denied: "闸机现在拒绝您的乘车码：{reason}",
    notice_lifted: "闸机已恢复接受您的乘车码。",
    footer: "Turnpike：一部手机乘地铁、过高速。",
  },
};

export const LANGUAGES = ["en", "zh"];

let current = "en";

export function language() {
  return current;
}

/** The string `key` in the current language with {name} placeholders filled. */
export function t(key, values = {}) {
  const text = STRINGS[current][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

/** Sets the language and rewrites every marked element of `root`. */
export function setLanguage(lang, root = document) {
  current = LANGUAGES.includes(lang) ? lang : "en";
  try {
    localStorage.setItem("turnpike-lang", current);
  } catch (_) {
    // Private mode: the choice lasts for this page only.
  }
  document.documentElement.lang = current === "zh" ? "zh-CN" : "en";
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  }
  // The switch is written in the other language: say so, for screen readers' pronunciation.
  const other = root.getElementById ? root.getElementById("lang") : null;
  if (other) other.lang = current === "zh" ? "en" : "zh-CN";
  document.title = t("app_title");
}

/** The stored choice, else the browser's preference. */
export function initialLanguage() {
  let stored = null;
  try {
    stored = localStorage.getItem("turnpike-lang");
  } catch (_) {
    stored = null;
  }
  if (LANGUAGES.includes(stored)) return stored;
  return (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
}
