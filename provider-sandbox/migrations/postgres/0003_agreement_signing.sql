-- Agreements signed the platform's way, through `alipay.user.agreement.page.sign`: the
-- merchant's own number for the agreement (`external_agreement_no`), the personal product and
-- scene it was signed under, and where its sign and unsign notifications (`dut_user_sign`,
-- `dut_user_unsign`) are posted. Agreements made by the sandbox's admin shortcut have no
-- external number and no notify URL.
ALTER TABLE agreements ADD COLUMN external_agreement_no TEXT;
ALTER TABLE agreements ADD COLUMN personal_product_code TEXT NOT NULL DEFAULT 'GENERAL_WITHHOLDING_P';
ALTER TABLE agreements ADD COLUMN sign_scene TEXT NOT NULL DEFAULT 'INDUSTRY|DEFAULT_SCENE';
ALTER TABLE agreements ADD COLUMN notify_url TEXT;

-- One agreement in force per merchant number (product and scene included), as on the
-- platform; an ended one frees its number.
CREATE UNIQUE INDEX agreements_external_in_force
    ON agreements (app_id, personal_product_code, sign_scene, external_agreement_no)
    WHERE status <> 'UNSIGN';
