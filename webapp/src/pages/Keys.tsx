/**
 * API keys: the list (masked previews), create (the full key is shown once, with copy),
 * regenerate (confirmation: the old key stops working at once) and revoke.
 */
import { Link } from '@tanstack/react-router';
import { useState } from 'react';
import { serviceLabel, type ApiKey, type ServiceName } from '../api/client';
import { useApiKeys, useCreateKey, useRegenerateKey, useRevokeKey, useServices } from '../api/queries';
import { Alert, Badge, Button, Card, CopyButton, Dialog, EmptyState, ErrorState, Field, PageHeader, Spinner, errorText, formatDate, inputClass } from '../components/ui';

export function KeysPage() {
  const [showRevoked, setShowRevoked] = useState(false);
  const keysQ = useApiKeys(showRevoked);
  const services = useServices();
  const [creating, setCreating] = useState(false);
  const [shown, setShown] = useState<ApiKey | null>(null);
  const [confirm, setConfirm] = useState<{ kind: 'regenerate' | 'revoke'; key: ApiKey } | null>(null);
  const configured = (services.data ?? []).map((s) => s.service);

  return (
    <>
      <PageHeader
        title="API keys"
        description="Keys authenticate your requests to Suiftly's gateways. Only a masked preview is stored for display."
        actions={
          <Button onClick={() => setCreating(true)} disabled={configured.length === 0}>
            Create key
          </Button>
        }
      />
      {services.data && configured.length === 0 && (
        <div className="mb-4">
          <Alert tone="blue" title="Set up a service first">
            Keys belong to a service.{' '}
            <Link to="/services/$service" params={{ service: 'seal' }} className="underline">
              Enable Seal
            </Link>
            , gRPC or GraphQL, then create keys here.
          </Alert>
        </div>
      )}
      {services.data && services.data.length > 0 && (
        <ul className="mb-4 flex flex-wrap gap-2 text-sm text-slate-600">
          {services.data.map((s) => (
            <li key={s.service} className="rounded-md bg-white px-2 py-1 ring-1 ring-slate-200">
              {serviceLabel(s.service)}: {s.active_api_keys} of {s.api_key_limit} keys
            </li>
          ))}
        </ul>
      )}
      <Card
        title="Your keys"
        actions={
          <label className="flex items-center gap-2 text-sm text-slate-700">
            <input type="checkbox" className="accent-blue-600" checked={showRevoked} onChange={(e) => setShowRevoked(e.target.checked)} />
            Show revoked keys
          </label>
        }
      >
        {keysQ.isPending ? (
          <Spinner label="Loading keys" />
        ) : keysQ.isError ? (
          <ErrorState error={keysQ.error} onRetry={() => void keysQ.refetch()} />
        ) : keysQ.data.length === 0 ? (
          <EmptyState title="No API keys yet">
            {configured.length > 0 ? 'Create one to start sending requests.' : 'Enable a service, then create a key.'}
          </EmptyState>
        ) : (
          <KeyTable keys={keysQ.data} onRegenerate={(key) => setConfirm({ kind: 'regenerate', key })} onRevoke={(key) => setConfirm({ kind: 'revoke', key })} />
        )}
      </Card>

      {creating && (
        <CreateKeyDialog
          services={configured}
          onClose={() => setCreating(false)}
          onCreated={(k) => {
            setCreating(false);
            setShown(k);
          }}
        />
      )}
      {confirm && (
        <ConfirmDialog
          kind={confirm.kind}
          apiKey={confirm.key}
          onClose={() => setConfirm(null)}
          onRegenerated={(k) => {
            setConfirm(null);
            setShown(k);
          }}
        />
      )}
      <Dialog open={shown !== null} onClose={() => setShown(null)} title="Your new API key" footer={<Button onClick={() => setShown(null)}>I have saved it</Button>}>
        {shown?.api_key && (
          <>
            <Alert tone="amber">This is the only time the full key is shown. Copy it now and keep it secret.</Alert>
            <div>
              <label htmlFor="new-key" className="text-sm font-medium text-slate-800">
                {serviceLabel(shown.service)} key ({shown.network})
              </label>
              <input id="new-key" readOnly value={shown.api_key} onFocus={(e) => e.target.select()} className={`${inputClass} mt-1 font-mono`} />
            </div>
            <CopyButton text={shown.api_key} label="Copy key" />
          </>
        )}
      </Dialog>
    </>
  );
}

function KeyTable({ keys, onRegenerate, onRevoke }: { keys: ApiKey[]; onRegenerate: (k: ApiKey) => void; onRevoke: (k: ApiKey) => void }) {
  return (
    <ul className="divide-y divide-slate-100" aria-label="API keys">
      {keys.map((k) => (
        <li key={k.key_id} className="flex flex-wrap items-center gap-x-4 gap-y-2 py-3" data-testid="api-key-row">
          <div className="min-w-0 basis-full sm:basis-0 sm:grow">
            <p className="font-mono text-sm break-all text-slate-900">{k.preview}</p>
            <p className="text-xs text-slate-500">
              {serviceLabel(k.service)} · {k.network}
              {k.service === 'seal' ? ` · ${k.access}` : ''} · created {formatDate(k.created_at)}
              {k.revoked_at ? ` · revoked ${formatDate(k.revoked_at)}` : ''}
            </p>
          </div>
          {k.is_active ? <Badge tone="green">Active</Badge> : <Badge tone="gray">Revoked</Badge>}
          {k.is_active && (
            <div className="flex gap-2">
              <Button variant="secondary" onClick={() => onRegenerate(k)} aria-label={`Regenerate key ${k.preview}`}>
                Regenerate
              </Button>
              <Button variant="ghostDanger" onClick={() => onRevoke(k)} aria-label={`Revoke key ${k.preview}`}>
                Revoke
              </Button>
            </div>
          )}
        </li>
      ))}
    </ul>
  );
}

function CreateKeyDialog({ services, onClose, onCreated }: { services: ServiceName[]; onClose: () => void; onCreated: (k: ApiKey) => void }) {
  const [service, setService] = useState<ServiceName>(services[0] ?? 'seal');
  const [network, setNetwork] = useState<'mainnet' | 'testnet'>('mainnet');
  const [access, setAccess] = useState<'open' | 'permission'>('open');
  const create = useCreateKey();
  return (
    <Dialog
      open
      onClose={onClose}
      title="Create an API key"
      footer={
        <>
          <Button variant="secondary" onClick={onClose}>
            Cancel
          </Button>
          <Button
            busy={create.isPending}
            onClick={() =>
              create.mutate(service === 'seal' ? { service, network, access } : { service, network }, { onSuccess: onCreated })
            }
          >
            Create key
          </Button>
        </>
      }
    >
      <Field label="Service">
        {(p) => (
          <select {...p} className={inputClass} value={service} onChange={(e) => setService(e.target.value as ServiceName)}>
            {services.map((s) => (
              <option key={s} value={s}>
                {serviceLabel(s)}
              </option>
            ))}
          </select>
        )}
      </Field>
      <Field label="Network">
        {(p) => (
          <select {...p} className={inputClass} value={network} onChange={(e) => setNetwork(e.target.value as 'mainnet' | 'testnet')}>
            <option value="mainnet">Mainnet</option>
            <option value="testnet">Testnet</option>
          </select>
        )}
      </Field>
      {service === 'seal' && (
        <Field label="Access" hint="Open: any package. Permission: only packages you allow.">
          {(p) => (
            <select {...p} className={inputClass} value={access} onChange={(e) => setAccess(e.target.value as 'open' | 'permission')}>
              <option value="open">Open</option>
              <option value="permission">Permission</option>
            </select>
          )}
        </Field>
      )}
      {create.isError && <Alert tone="red">{errorText(create.error)}</Alert>}
    </Dialog>
  );
}

function ConfirmDialog({
  kind,
  apiKey,
  onClose,
  onRegenerated,
}: {
  kind: 'regenerate' | 'revoke';
  apiKey: ApiKey;
  onClose: () => void;
  onRegenerated: (k: ApiKey) => void;
}) {
  const regenerate = useRegenerateKey();
  const revoke = useRevokeKey();
  const m = kind === 'regenerate' ? regenerate : revoke;
  return (
    <Dialog
      open
      onClose={onClose}
      title={kind === 'regenerate' ? 'Regenerate this key?' : 'Revoke this key?'}
      footer={
        <>
          <Button variant="secondary" onClick={onClose}>
            Cancel
          </Button>
          <Button
            variant="danger"
            busy={m.isPending}
            onClick={() =>
              kind === 'regenerate'
                ? regenerate.mutate(apiKey.key_id, { onSuccess: onRegenerated })
                : revoke.mutate(apiKey.key_id, { onSuccess: onClose })
            }
          >
            {kind === 'regenerate' ? 'Regenerate' : 'Revoke'}
          </Button>
        </>
      }
    >
      <p>
        Key <span className="font-mono">{apiKey.preview}</span> ({serviceLabel(apiKey.service)}, {apiKey.network}){' '}
        {kind === 'regenerate'
          ? 'stops working immediately and a new key with the same settings replaces it.'
          : 'stops working immediately. This cannot be undone.'}
      </p>
      {m.isError && <Alert tone="red">{errorText(m.error)}</Alert>}
    </Dialog>
  );
}
