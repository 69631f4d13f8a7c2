import type { Service } from '../api/client';
import { Badge } from './ui';

/** Active / disabled / not enabled. (Suspension arrives with the billing endpoints.) */
export function ServiceStatus({ service }: { service: Service | undefined }) {
  if (!service) return <Badge tone="gray">Not enabled</Badge>;
  return service.is_enabled ? <Badge tone="green">Active</Badge> : <Badge tone="amber">Disabled</Badge>;
}
