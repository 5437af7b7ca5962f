import { type Command, InvalidArgumentError } from 'commander';
import type { Deps } from '../../deps';
import { deliverInvoice } from '../../use-cases/deliver-invoice';
import { PermanentError } from '../../use-cases/errors';
import { ResendRefused, resendDelivery } from '../../use-cases/resend-delivery';
import { cliActor } from './receivables';

/** Where a command writes its lines (stdout in the CLI, an array in tests). */
export type Out = (line: string) => void;

/**
 * `billing resend <deliveryId>`: an operator sends an invoice email again on purpose (failed,
 * unknown or sent), under the same Message-ID. By default a worker makes the attempt; --send-now
 * makes it in this process and prints the server's answer.
 */
export async function resendCommand(deps: Deps, args: { deliveryId: number; sendNow: boolean; actor: string }, out: Out): Promise<void> {
  let requested;
  try {
    requested = await resendDelivery(deps, args.deliveryId, { requestedBy: args.actor, enqueue: !args.sendNow });
  } catch (err) {
    // Refusals are answers for the operator, not faults: printed without a stack, exit code 2.
    if (err instanceof ResendRefused) throw new PermanentError(err.message);
    throw err;
  }
  out(`delivery ${requested.deliveryId} of ${requested.invoiceNumber} (was ${requested.previousStatus}) is pending again, Message-ID ${requested.messageId}`);
  if (!args.sendNow) {
    out(`queued as job ${requested.jobId ?? '(none)'}; a worker sends it (see GET /deliveries/${requested.deliveryId})`);
    return;
  }
  try {
    const outcome = await deliverInvoice(deps, requested.deliveryId, { finalAttempt: true });
    out(outcome.kind === 'sent' ? `sent: ${outcome.response}` : `not sent: the delivery is ${outcome.kind === 'unchanged' ? outcome.status : 'unknown'}`);
  } catch (err) {
    // deliverInvoice has recorded the failure on the delivery and in its communication log.
    throw new PermanentError(`not sent: ${err instanceof Error ? err.message : String(err)}`);
  }
}

export function registerResendCommand(program: Command, withDeps: (run: (deps: Deps) => Promise<void>) => Promise<void>): void {
  program
    .command('resend')
    .argument('<deliveryId>', 'the email delivery to send again (GET /deliveries?status=failed or unknown)', (v) => {
      if (!/^[1-9]\d{0,17}$/.test(v)) throw new InvalidArgumentError('expected a delivery id');
      return Number(v);
    })
    .option('--send-now', 'send it from this process and print the server reply, instead of leaving it to the workers')
    .description('send an invoice email again on purpose (failed, unknown or sent), under the same Message-ID')
    .addHelpText(
      'after',
      '\nA pending or sending delivery already has an attempt on its way and is refused. Every attempt, this one\n' +
        'included, is in the communication log: GET /deliveries/<id>.',
    )
    .action((deliveryId: number, opts: { sendNow?: boolean }) =>
      withDeps((deps) => resendCommand(deps, { deliveryId, sendNow: opts.sendNow ?? false, actor: cliActor() }, (l) => console.log(l))),
    );
}
