// Drives the provider sandbox with the official Alipay Node.js SDK (`alipay-sdk`, pinned in
// package.json / package-lock.json), to prove wire compatibility: the SDK signs every request
// itself and verifies every answer's RSA2 signature itself (`validateSign: true`).
//
// Flow: pay (bar_code) -> query -> partial refund -> the same refund again (idempotent) -> query
// -> a second pay -> cancel (reversal) -> query; a user-paying pay (10003, WAIT_BUYER_PAY) ->
// query -> cancel (close) -> query; a business refusal (reused payment code). Then two negative
// checks: a client holding a different platform public key must have the SDK reject the
// sandbox's answer ("验签失败"), and a client signing with a different app private key must be
// refused by the sandbox with isv.invalid-signature (an answer the SDK still verifies).
//
// Usage (every option may also come from the environment variable named in brackets):
//   node drive.mjs --gateway http://127.0.0.1:8090/gateway.do [SDK_GATEWAY]
//     --app-id 2021000000000001 [SDK_APP_ID]
//     --app-private-key dev-keys/app-private.pem [SDK_APP_PRIVATE_KEY]
//     --platform-public-key dev-keys/platform-public.pem [SDK_PLATFORM_PUBLIC_KEY]
//     --pay-code 28… --cancel-code 28… [SDK_PAY_CODE, SDK_CANCEL_CODE]  (one buyer's codes)
//     --wait-code 28… [SDK_WAIT_CODE]  (a code of a buyer whose confirm_over is below 600.00)
//     --prefix SDK_1 [SDK_PREFIX]  (out_trade_no prefix; default from the clock)
//
// Prints one JSON object on stdout ({"ok": bool, "mismatches": [...], "sdk": ..., "steps": ...})
// and exits 1 when anything differs from what the platform's documentation says.

import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

import { AlipaySdk } from 'alipay-sdk';

const OPTIONS = {
  gateway: 'SDK_GATEWAY',
  'app-id': 'SDK_APP_ID',
  'app-private-key': 'SDK_APP_PRIVATE_KEY',
  'platform-public-key': 'SDK_PLATFORM_PUBLIC_KEY',
  'pay-code': 'SDK_PAY_CODE',
  'cancel-code': 'SDK_CANCEL_CODE',
  'wait-code': 'SDK_WAIT_CODE',
  prefix: 'SDK_PREFIX',
};

function options() {
  const { values } = parseArgs({
    options: Object.fromEntries(Object.keys(OPTIONS).map((k) => [k, { type: 'string' }])),
  });
  const out = {};
  for (const [name, env] of Object.entries(OPTIONS)) {
    out[name] = values[name] ?? process.env[env];
    if (!out[name] && name !== 'prefix') {
      throw new Error(`missing --${name} (or ${env})`);
    }
  }
  out.prefix ??= `SDK_${Date.now()}`;
  return out;
}

const opts = options();
const require = createRequire(import.meta.url);
const sdkVersion = JSON.parse(readFileSync(require.resolve('alipay-sdk/package.json'), 'utf8')).version;

const appPrivateKey = readFileSync(opts['app-private-key'], 'utf8');
const platformPublicKey = readFileSync(opts['platform-public-key'], 'utf8');

/** An SDK client as a merchant configures one; the key type follows the PEM label. */
function client(privateKey, alipayPublicKey) {
  return new AlipaySdk({
    appId: opts['app-id'],
    privateKey,
    keyType: privateKey.includes('BEGIN RSA PRIVATE KEY') ? 'PKCS1' : 'PKCS8',
    alipayPublicKey,
    gateway: opts.gateway,
    signType: 'RSA2',
    charset: 'utf-8',
    // Keep the wire's snake_case field names in the answers.
    camelcase: false,
    timeout: 10000,
  });
}

const sdk = client(appPrivateKey, platformPublicKey);

const steps = {};
const mismatches = [];

/** One open-API call through the SDK, with response signature verification on. */
async function call(step, method, bizContent, via = sdk) {
  const answer = await via.exec(method, { bizContent }, { validateSign: true });
  steps[step] = answer;
  return answer;
}

function expect(step, field, actual, expected) {
  if (actual !== expected) {
    mismatches.push({ step, field, expected, actual: actual ?? null });
  }
}

function expectFields(step, answer, fields) {
  for (const [field, expected] of Object.entries(fields)) {
    expect(step, field, answer?.[field], expected);
  }
}

const subject = 'G4 高速 12号出口 toll';
const A = `${opts.prefix}_A`;
const B = `${opts.prefix}_B`;
const C = `${opts.prefix}_C`;

async function main() {
  // 1. A bar-code payment.
  const pay = await call('pay', 'alipay.trade.pay', {
    out_trade_no: A,
    scene: 'bar_code',
    auth_code: opts['pay-code'],
    total_amount: '12.50',
    subject,
  });
  expectFields('pay', pay, {
    code: '10000',
    msg: 'Success',
    out_trade_no: A,
    total_amount: '12.50',
    receipt_amount: '12.50',
    buyer_pay_amount: '12.50',
  });
  expect('pay', 'trade_no is 28 digits', /^\d{28}$/.test(pay.trade_no ?? ''), true);
  expect('pay', 'gmt_payment set', typeof pay.gmt_payment, 'string');
  expect('pay', 'fund_bill_list is an array', Array.isArray(pay.fund_bill_list), true);

  // 2. Query it by out_trade_no.
  const query = await call('query', 'alipay.trade.query', { out_trade_no: A });
  expectFields('query', query, {
    code: '10000',
    trade_no: pay.trade_no,
    out_trade_no: A,
    trade_status: 'TRADE_SUCCESS',
    total_amount: '12.50',
    buyer_user_id: pay.buyer_user_id,
  });

  // 3. A partial refund, by trade_no, then the same request again (idempotent: no money moves).
  const refundBiz = {
    trade_no: pay.trade_no,
    refund_amount: '2.50',
    out_request_no: `${A}-R1`,
    refund_reason: '多收了 toll overcharge',
  };
  const refund = await call('refund', 'alipay.trade.refund', refundBiz);
  expectFields('refund', refund, {
    code: '10000',
    trade_no: pay.trade_no,
    out_trade_no: A,
    fund_change: 'Y',
    refund_fee: '2.50',
  });
  const again = await call('refund_repeat', 'alipay.trade.refund', refundBiz);
  expectFields('refund_repeat', again, { code: '10000', fund_change: 'N', refund_fee: '2.50' });
  const afterRefund = await call('query_after_refund', 'alipay.trade.query', { trade_no: pay.trade_no });
  expectFields('query_after_refund', afterRefund, { code: '10000', trade_status: 'TRADE_SUCCESS' });

  // 4. A second payment, then cancel it: a paid trade is reversed (action refund).
  const pay2 = await call('pay2', 'alipay.trade.pay', {
    out_trade_no: B,
    scene: 'bar_code',
    auth_code: opts['cancel-code'],
    total_amount: '7.00',
    subject,
  });
  expectFields('pay2', pay2, { code: '10000', out_trade_no: B, total_amount: '7.00' });
  const cancel = await call('cancel', 'alipay.trade.cancel', { out_trade_no: B });
  expectFields('cancel', cancel, {
    code: '10000',
    trade_no: pay2.trade_no,
    out_trade_no: B,
    action: 'refund',
    retry_flag: 'N',
  });
  const afterCancel = await call('query_after_cancel', 'alipay.trade.query', { out_trade_no: B });
  expectFields('query_after_cancel', afterCancel, { code: '10000', trade_status: 'TRADE_CLOSED' });

  // 5. User paying: the buyer must confirm, the merchant gives up and cancels (action close).
  const wait = await call('wait_pay', 'alipay.trade.pay', {
    out_trade_no: C,
    scene: 'bar_code',
    auth_code: opts['wait-code'],
    total_amount: '600.00',
    subject,
  });
  expectFields('wait_pay', wait, { code: '10003', msg: 'order success pay inprocess', out_trade_no: C });
  const waitQuery = await call('wait_query', 'alipay.trade.query', { out_trade_no: C });
  expectFields('wait_query', waitQuery, { code: '10000', trade_status: 'WAIT_BUYER_PAY' });
  const waitCancel = await call('wait_cancel', 'alipay.trade.cancel', { out_trade_no: C });
  expectFields('wait_cancel', waitCancel, { code: '10000', action: 'close' });
  const waitClosed = await call('wait_query_after_cancel', 'alipay.trade.query', { out_trade_no: C });
  expectFields('wait_query_after_cancel', waitClosed, { code: '10000', trade_status: 'TRADE_CLOSED' });

  // 6. A business refusal is a signed answer too: the used payment code is refused.
  const refused = await call('refused_pay', 'alipay.trade.pay', {
    out_trade_no: `${opts.prefix}_D`,
    scene: 'bar_code',
    auth_code: opts['pay-code'],
    total_amount: '1.00',
    subject,
  });
  expectFields('refused_pay', refused, {
    code: '40004',
    msg: 'Business Failed',
    sub_code: 'ACQ.PAYMENT_AUTH_CODE_INVALID',
  });

  // 7. Verification is really on: with another platform public key the SDK must reject the
  // sandbox's (correctly signed) answer.
  const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const wrongPlatform = stranger.publicKey.export({ type: 'spki', format: 'pem' });
  const suspicious = client(appPrivateKey, wrongPlatform);
  let rejection = null;
  try {
    const accepted = await suspicious.exec('alipay.trade.query', { bizContent: { out_trade_no: A } }, { validateSign: true });
    mismatches.push({ step: 'wrong_platform_key', field: 'rejected', expected: true, actual: accepted });
  } catch (err) {
    rejection = String(err?.message ?? err);
    expect('wrong_platform_key', 'SDK says the signature failed', rejection.includes('验签失败'), true);
  }
  steps.wrong_platform_key = { rejected: rejection !== null, error: rejection };

  // 8. ...and the sandbox really checks the SDK's signature: another app private key is refused
  // (the refusal itself verifies with the right platform key).
  const wrongApp = stranger.privateKey.export({ type: 'pkcs8', format: 'pem' });
  const impostor = client(wrongApp, platformPublicKey);
  const forged = await call('wrong_app_key', 'alipay.trade.query', { out_trade_no: A }, impostor);
  expectFields('wrong_app_key', forged, {
    code: '40002',
    msg: 'Invalid Arguments',
    sub_code: 'isv.invalid-signature',
  });
}

let failure = null;
try {
  await main();
} catch (err) {
  failure = String(err?.stack ?? err);
  mismatches.push({ step: 'exception', field: 'error', expected: null, actual: failure });
}

const ok = mismatches.length === 0;
process.stdout.write(
  `${JSON.stringify({ ok, sdk: { name: 'alipay-sdk', version: sdkVersion, node: process.version }, mismatches, steps })}\n`,
);
process.exitCode = ok ? 0 : 1;
