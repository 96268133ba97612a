-- The PostgreSQL capture of syncd before statement triggers (commit ddd8ad7): a row trigger
-- function per public table, its main (and, on the filtered customers, _upd and _flt), _key
-- and _ntf triggers, with the fingerprint comments that build wrote. Dumped with
-- pg_get_functiondef / pg_get_triggerdef from a city initialised with schemas/crm.yaml, so
-- tests can check that `init` converts an existing city (test_capture_statements.py).

CREATE OR REPLACE FUNCTION public.syncd_capture_customers_fn()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        PERFORM pg_notify('syncd_changelog', '');
    ELSIF TG_OP = 'UPDATE' AND TG_ARGV[0] <> 'D' THEN
        INSERT INTO public.syncd_changelog (table_name, op, row_image, old_filter)
        VALUES ('customers', 'U', jsonb_build_object('customer_id', NEW.customer_id, 'customer_type', NEW.customer_type, 'name', NEW.name, 'id_type', NEW.id_type, 'id_number', NEW.id_number, 'phone', NEW.phone, 'address', NEW.address, 'home_city', NEW.home_city, 'status', NEW.status, 'risk_level', NEW.risk_level, 'risk_tags', NEW.risk_tags, 'credit_limit', NEW.credit_limit, 'created_at', NEW.created_at, 'updated_at', NEW.updated_at),
                CASE WHEN TG_ARGV[0] = '1' THEN jsonb_build_object('status', OLD.status) END);
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO public.syncd_changelog (table_name, op, row_image)
        VALUES ('customers', 'I', jsonb_build_object('customer_id', NEW.customer_id, 'customer_type', NEW.customer_type, 'name', NEW.name, 'id_type', NEW.id_type, 'id_number', NEW.id_number, 'phone', NEW.phone, 'address', NEW.address, 'home_city', NEW.home_city, 'status', NEW.status, 'risk_level', NEW.risk_level, 'risk_tags', NEW.risk_tags, 'credit_limit', NEW.credit_limit, 'created_at', NEW.created_at, 'updated_at', NEW.updated_at));
    ELSE
        -- A DELETE, or an UPDATE that moved the row to another primary key: the main trigger
        -- logs the new key's row, this the old key's end. Only the filter columns of the old
        -- image decide, as for any delete, whether the hub ever had the old key.
        INSERT INTO public.syncd_changelog (table_name, op, row_image)
        VALUES ('customers', 'D', jsonb_build_object('customer_id', OLD.customer_id, 'customer_type', OLD.customer_type, 'name', OLD.name, 'id_type', OLD.id_type, 'id_number', OLD.id_number, 'phone', OLD.phone, 'address', OLD.address, 'home_city', OLD.home_city, 'status', OLD.status, 'risk_level', OLD.risk_level, 'risk_tags', OLD.risk_tags, 'credit_limit', OLD.credit_limit, 'created_at', OLD.created_at, 'updated_at', OLD.updated_at));
    END IF;
    RETURN NULL;
END
$function$;

COMMENT ON FUNCTION syncd_capture_customers_fn() IS 'syncd:4d16899b733218cbe759a789425cbf3c9b1c8f680f0b23664102118cfecba951';

CREATE OR REPLACE FUNCTION public.syncd_capture_deposit_accounts_fn()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        PERFORM pg_notify('syncd_changelog', '');
    ELSIF TG_OP = 'UPDATE' AND TG_ARGV[0] <> 'D' THEN
        INSERT INTO public.syncd_changelog (table_name, op, row_image, old_filter)
        VALUES ('deposit_accounts', 'U', jsonb_build_object('account_id', NEW.account_id, 'customer_id', NEW.customer_id, 'product', NEW.product, 'currency', NEW.currency, 'balance', NEW.balance, 'interest_rate', NEW.interest_rate, 'opened_on', NEW.opened_on, 'maturity_on', NEW.maturity_on, 'status', NEW.status, 'updated_at', NEW.updated_at),
                CASE WHEN TG_ARGV[0] = '1' THEN NULL::jsonb END);
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO public.syncd_changelog (table_name, op, row_image)
        VALUES ('deposit_accounts', 'I', jsonb_build_object('account_id', NEW.account_id, 'customer_id', NEW.customer_id, 'product', NEW.product, 'currency', NEW.currency, 'balance', NEW.balance, 'interest_rate', NEW.interest_rate, 'opened_on', NEW.opened_on, 'maturity_on', NEW.maturity_on, 'status', NEW.status, 'updated_at', NEW.updated_at));
    ELSE
        -- A DELETE, or an UPDATE that moved the row to another primary key: the main trigger
        -- logs the new key's row, this the old key's end. Only the filter columns of the old
        -- image decide, as for any delete, whether the hub ever had the old key.
        INSERT INTO public.syncd_changelog (table_name, op, row_image)
        VALUES ('deposit_accounts', 'D', jsonb_build_object('account_id', OLD.account_id, 'customer_id', OLD.customer_id, 'product', OLD.product, 'currency', OLD.currency, 'balance', OLD.balance, 'interest_rate', OLD.interest_rate, 'opened_on', OLD.opened_on, 'maturity_on', OLD.maturity_on, 'status', OLD.status, 'updated_at', OLD.updated_at));
    END IF;
    RETURN NULL;
END
$function$;

COMMENT ON FUNCTION syncd_capture_deposit_accounts_fn() IS 'syncd:9b0afdf9939475a140727f21acdcca3229a12b39a4ad88575daff2a04bf9e84a';

CREATE OR REPLACE FUNCTION public.syncd_capture_intermediary_business_fn()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        PERFORM pg_notify('syncd_changelog', '');
    ELSIF TG_OP = 'UPDATE' AND TG_ARGV[0] <> 'D' THEN
        INSERT INTO public.syncd_changelog (table_name, op, row_image, old_filter)
        VALUES ('intermediary_business', 'U', jsonb_build_object('business_id', NEW.business_id, 'customer_id', NEW.customer_id, 'product_type', NEW.product_type, 'product_name', NEW.product_name, 'amount', NEW.amount, 'fee_income', NEW.fee_income, 'trade_date', NEW.trade_date, 'updated_at', NEW.updated_at),
                CASE WHEN TG_ARGV[0] = '1' THEN NULL::jsonb END);
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO public.syncd_changelog (table_name, op, row_image)
        VALUES ('intermediary_business', 'I', jsonb_build_object('business_id', NEW.business_id, 'customer_id', NEW.customer_id, 'product_type', NEW.product_type, 'product_name', NEW.product_name, 'amount', NEW.amount, 'fee_income', NEW.fee_income, 'trade_date', NEW.trade_date, 'updated_at', NEW.updated_at));
    ELSE
        -- A DELETE, or an UPDATE that moved the row to another primary key: the main trigger
        -- logs the new key's row, this the old key's end. Only the filter columns of the old
        -- image decide, as for any delete, whether the hub ever had the old key.
        INSERT INTO public.syncd_changelog (table_name, op, row_image)
        VALUES ('intermediary_business', 'D', jsonb_build_object('business_id', OLD.business_id, 'customer_id', OLD.customer_id, 'product_type', OLD.product_type, 'product_name', OLD.product_name, 'amount', OLD.amount, 'fee_income', OLD.fee_income, 'trade_date', OLD.trade_date, 'updated_at', OLD.updated_at));
    END IF;
    RETURN NULL;
END
$function$;

COMMENT ON FUNCTION syncd_capture_intermediary_business_fn() IS 'syncd:a1d6d1fb8b0ba1c5813223493259c698fab89e0235d4ea6f640606dd03e291f7';

CREATE OR REPLACE FUNCTION public.syncd_capture_loans_fn()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        PERFORM pg_notify('syncd_changelog', '');
    ELSIF TG_OP = 'UPDATE' AND TG_ARGV[0] <> 'D' THEN
        INSERT INTO public.syncd_changelog (table_name, op, row_image, old_filter)
        VALUES ('loans', 'U', jsonb_build_object('loan_id', NEW.loan_id, 'customer_id', NEW.customer_id, 'product', NEW.product, 'principal', NEW.principal, 'balance', NEW.balance, 'interest_rate', NEW.interest_rate, 'five_class', NEW.five_class, 'overdue_days', NEW.overdue_days, 'issued_on', NEW.issued_on, 'maturity_on', NEW.maturity_on, 'collateral', NEW.collateral, 'updated_at', NEW.updated_at),
                CASE WHEN TG_ARGV[0] = '1' THEN NULL::jsonb END);
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO public.syncd_changelog (table_name, op, row_image)
        VALUES ('loans', 'I', jsonb_build_object('loan_id', NEW.loan_id, 'customer_id', NEW.customer_id, 'product', NEW.product, 'principal', NEW.principal, 'balance', NEW.balance, 'interest_rate', NEW.interest_rate, 'five_class', NEW.five_class, 'overdue_days', NEW.overdue_days, 'issued_on', NEW.issued_on, 'maturity_on', NEW.maturity_on, 'collateral', NEW.collateral, 'updated_at', NEW.updated_at));
    ELSE
        -- A DELETE, or an UPDATE that moved the row to another primary key: the main trigger
        -- logs the new key's row, this the old key's end. Only the filter columns of the old
        -- image decide, as for any delete, whether the hub ever had the old key.
        INSERT INTO public.syncd_changelog (table_name, op, row_image)
        VALUES ('loans', 'D', jsonb_build_object('loan_id', OLD.loan_id, 'customer_id', OLD.customer_id, 'product', OLD.product, 'principal', OLD.principal, 'balance', OLD.balance, 'interest_rate', OLD.interest_rate, 'five_class', OLD.five_class, 'overdue_days', OLD.overdue_days, 'issued_on', OLD.issued_on, 'maturity_on', OLD.maturity_on, 'collateral', OLD.collateral, 'updated_at', OLD.updated_at));
    END IF;
    RETURN NULL;
END
$function$;

COMMENT ON FUNCTION syncd_capture_loans_fn() IS 'syncd:c2a21b87de953984d70d417233d9195bc3609f84276fbb0e3170e40772b60ece';

CREATE TRIGGER syncd_capture_customers AFTER INSERT OR DELETE ON public.customers FOR EACH ROW EXECUTE FUNCTION syncd_capture_customers_fn('0');

COMMENT ON TRIGGER syncd_capture_customers ON customers IS 'syncd:f97f1ef21e381a84a3a024c50efc4453b7db28f1d60a2227451aebb70b0cd81f';

CREATE TRIGGER syncd_capture_customers_flt AFTER UPDATE ON public.customers FOR EACH ROW WHEN (((old.status)::text IS DISTINCT FROM (new.status)::text)) EXECUTE FUNCTION syncd_capture_customers_fn('1');

COMMENT ON TRIGGER syncd_capture_customers_flt ON customers IS 'syncd:484b840451ed9ed5c42a1ddc023b1fdb41bff6c6f584d2f57f41dd581f1718c5';

CREATE TRIGGER syncd_capture_customers_key AFTER UPDATE OF customer_id ON public.customers FOR EACH ROW WHEN (((old.customer_id)::text IS DISTINCT FROM (new.customer_id)::text)) EXECUTE FUNCTION syncd_capture_customers_fn('D');

COMMENT ON TRIGGER syncd_capture_customers_key ON customers IS 'syncd:bfc3fbc9cc51922e74fac5102d5bd5fe6d937e885debbeb1044175259bc45b72';

CREATE TRIGGER syncd_capture_customers_ntf AFTER INSERT OR DELETE OR UPDATE ON public.customers FOR EACH STATEMENT EXECUTE FUNCTION syncd_capture_customers_fn('N');

COMMENT ON TRIGGER syncd_capture_customers_ntf ON customers IS 'syncd:7dd88977e081323b2e54c4187e4a982cf448a75156406c5b06928b122fc27682';

CREATE TRIGGER syncd_capture_customers_upd AFTER UPDATE ON public.customers FOR EACH ROW WHEN ((NOT ((old.status)::text IS DISTINCT FROM (new.status)::text))) EXECUTE FUNCTION syncd_capture_customers_fn('0');

COMMENT ON TRIGGER syncd_capture_customers_upd ON customers IS 'syncd:41be61164329a47cf417b5a5798e2b440d004982567a174a4e10bf2ada91d89f';

CREATE TRIGGER syncd_capture_deposit_accounts AFTER INSERT OR DELETE OR UPDATE ON public.deposit_accounts FOR EACH ROW EXECUTE FUNCTION syncd_capture_deposit_accounts_fn('0');

COMMENT ON TRIGGER syncd_capture_deposit_accounts ON deposit_accounts IS 'syncd:bac0409365f4ea14464fe2965a95b75f0f3468918423e85cfc2b91ee77f7163d';

CREATE TRIGGER syncd_capture_deposit_accounts_key AFTER UPDATE OF account_id ON public.deposit_accounts FOR EACH ROW WHEN (((old.account_id)::text IS DISTINCT FROM (new.account_id)::text)) EXECUTE FUNCTION syncd_capture_deposit_accounts_fn('D');

COMMENT ON TRIGGER syncd_capture_deposit_accounts_key ON deposit_accounts IS 'syncd:32223ddfb027bbe3848b30622a27c0f54e5448b4189a79a9af6eb27fd7df9145';

CREATE TRIGGER syncd_capture_deposit_accounts_ntf AFTER INSERT OR DELETE OR UPDATE ON public.deposit_accounts FOR EACH STATEMENT EXECUTE FUNCTION syncd_capture_deposit_accounts_fn('N');

COMMENT ON TRIGGER syncd_capture_deposit_accounts_ntf ON deposit_accounts IS 'syncd:d0f86e87645575effccce11de21b29f314ac063da60c11b24417191ce7e9389c';

CREATE TRIGGER syncd_capture_intermediary_business AFTER INSERT OR DELETE OR UPDATE ON public.intermediary_business FOR EACH ROW EXECUTE FUNCTION syncd_capture_intermediary_business_fn('0');

COMMENT ON TRIGGER syncd_capture_intermediary_business ON intermediary_business IS 'syncd:8ef71b34be888ebfee837f48f4d2592607c4ee52022288ca611909bbe5ff6631';

CREATE TRIGGER syncd_capture_intermediary_business_key AFTER UPDATE OF business_id ON public.intermediary_business FOR EACH ROW WHEN (((old.business_id)::text IS DISTINCT FROM (new.business_id)::text)) EXECUTE FUNCTION syncd_capture_intermediary_business_fn('D');

COMMENT ON TRIGGER syncd_capture_intermediary_business_key ON intermediary_business IS 'syncd:beeb231a0049bd8ede7679890ae241892e1d4dbed742071463ab33cbdf159944';

CREATE TRIGGER syncd_capture_intermediary_business_ntf AFTER INSERT OR DELETE OR UPDATE ON public.intermediary_business FOR EACH STATEMENT EXECUTE FUNCTION syncd_capture_intermediary_business_fn('N');

COMMENT ON TRIGGER syncd_capture_intermediary_business_ntf ON intermediary_business IS 'syncd:6f3e0edbd10bfca47a29ad4cd84e6e9721f9a572c52deb9934910aeae937b56c';

CREATE TRIGGER syncd_capture_loans AFTER INSERT OR DELETE OR UPDATE ON public.loans FOR EACH ROW EXECUTE FUNCTION syncd_capture_loans_fn('0');

COMMENT ON TRIGGER syncd_capture_loans ON loans IS 'syncd:bbf52aff8b6f5cebc168ed16dd4b4537385c1da83f7ad1133debc8f74fafb49f';

CREATE TRIGGER syncd_capture_loans_key AFTER UPDATE OF loan_id ON public.loans FOR EACH ROW WHEN (((old.loan_id)::text IS DISTINCT FROM (new.loan_id)::text)) EXECUTE FUNCTION syncd_capture_loans_fn('D');

COMMENT ON TRIGGER syncd_capture_loans_key ON loans IS 'syncd:9119eb335179e1d7e3b72a3f457f6e7441f014fde5612ca5bcba9368e0d5e4d9';

CREATE TRIGGER syncd_capture_loans_ntf AFTER INSERT OR DELETE OR UPDATE ON public.loans FOR EACH STATEMENT EXECUTE FUNCTION syncd_capture_loans_fn('N');

COMMENT ON TRIGGER syncd_capture_loans_ntf ON loans IS 'syncd:fa8ca182bcfa7810e507ccca23612ce45f3a36b676624c049f0adc6dc0a54ca7';
