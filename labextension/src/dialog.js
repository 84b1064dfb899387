// The "Request export…" dialog: the files, a justification (required) and the kind of output.

import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { OUTPUT_TYPES } from './api';

const OUTPUT_LABELS = {
  figure: 'Figure',
  table: 'Table',
  text: 'Text',
  notebook: 'Notebook',
  other: 'Other'
};

export const JUSTIFICATION_REQUIRED =
  'A justification is required: say what the output is and why it may leave the workspace.';

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/**
 * The dialog's body. While it is shown, accepting with an empty justification is stopped before the
 * dialog sees it (a capture listener on the document runs before the dialog's own): the dialog stays
 * open and says why.
 */
export class RequestBody extends Widget {
  constructor({ files, justification = '', outputType = OUTPUT_TYPES[0], error = '' }) {
    super();
    this.addClass('dh-airlock-dialog');
    this._files = files.slice();
    const node = this.node;

    const intro = element('p', 'dh-airlock-intro');
    intro.textContent =
      files.length === 1
        ? 'This file will be reviewed before it can be downloaded from the airlock page:'
        : `These ${files.length} files will be reviewed before they can be downloaded from the airlock page:`;
    node.appendChild(intro);
    const list = element('ul', 'dh-airlock-files');
    for (const path of files) {
      const item = element('li', 'dh-airlock-file', path);
      item.title = path;
      list.appendChild(item);
    }
    node.appendChild(list);

    const textId = `dh-airlock-justification-${Private.nextId++}`;
    const textLabel = element('label', 'dh-airlock-label', 'Justification');
    textLabel.htmlFor = textId;
    node.appendChild(textLabel);
    const textarea = (this._textarea = element('textarea', 'dh-airlock-justification'));
    textarea.id = textId;
    textarea.name = 'justification';
    textarea.rows = 5;
    textarea.placeholder = 'What is this output, and why may it leave the workspace?';
    // Not `required`: the dialog would then disable its OK button instead of saying what is missing.
    textarea.setAttribute('aria-required', 'true');
    textarea.value = justification;
    node.appendChild(textarea);

    const errorNode = (this._error = element('p', 'dh-airlock-error'));
    errorNode.setAttribute('role', 'alert');
    errorNode.id = `${textId}-error`;
    textarea.setAttribute('aria-describedby', errorNode.id);
    node.appendChild(errorNode);

    const selectId = `dh-airlock-output-type-${Private.nextId++}`;
    const selectLabel = element('label', 'dh-airlock-label', 'Type of output');
    selectLabel.htmlFor = selectId;
    node.appendChild(selectLabel);
    const select = (this._select = element('select', 'dh-airlock-output-type'));
    select.id = selectId;
    select.name = 'output_type';
    for (const type of OUTPUT_TYPES) {
      const option = element('option', '', OUTPUT_LABELS[type]);
      option.value = type;
      select.appendChild(option);
    }
    select.value = OUTPUT_TYPES.includes(outputType) ? outputType : OUTPUT_TYPES[0];
    node.appendChild(select);

    textarea.addEventListener('input', () => {
      if (textarea.value.trim()) {
        this.showError('');
      }
    });
    this.showError(error);
  }

  /** The dialog's value: what the request will carry. */
  getValue() {
    return {
      files: this._files.slice(),
      justification: this._textarea.value.trim(),
      outputType: this._select.value
    };
  }

  /** Show (or, with '', clear) an error under the justification. */
  showError(message) {
    this._error.textContent = message;
    this._error.hidden = !message;
    this._textarea.classList.toggle('dh-mod-invalid', !!message);
    if (message) {
      this._textarea.setAttribute('aria-invalid', 'true');
    } else {
      this._textarea.removeAttribute('aria-invalid');
    }
  }

  onAfterAttach(msg) {
    super.onAfterAttach(msg);
    document.addEventListener('click', this, true);
    document.addEventListener('keydown', this, true);
  }

  onBeforeDetach(msg) {
    document.removeEventListener('click', this, true);
    document.removeEventListener('keydown', this, true);
    super.onBeforeDetach(msg);
  }

  dispose() {
    document.removeEventListener('click', this, true);
    document.removeEventListener('keydown', this, true);
    super.dispose();
  }

  handleEvent(event) {
    const dialog = this.node.closest('.jp-Dialog');
    if (!dialog || !(event.target instanceof Node) || !dialog.contains(event.target)) {
      return;
    }
    if (!this._accepting(event, dialog) || this._textarea.value.trim()) {
      return;
    }
    event.preventDefault();
    event.stopPropagation();
    this.showError(JUSTIFICATION_REQUIRED);
    this._textarea.focus();
  }

  /** Whether the dialog would take `event` as accepting it (its OK button, or Enter where it submits). */
  _accepting(event, dialog) {
    const target = event.target;
    if (event.type === 'click') {
      const button = target instanceof Element ? target.closest('.jp-Dialog-button') : null;
      return !!button && button.classList.contains('jp-mod-accept');
    }
    if (event.type !== 'keydown' || event.key !== 'Enter') {
      return false;
    }
    const active = document.activeElement;
    if (active instanceof HTMLButtonElement) {
      return active.classList.contains('jp-mod-accept');
    }
    return (
      target === dialog ||
      active instanceof HTMLSelectElement ||
      (active instanceof HTMLInputElement && !['button', 'submit', 'reset', 'image'].includes(active.type))
    );
  }
}

/**
 * Ask what to export: resolves with {files, justification, outputType}, or null if cancelled.
 * Should an empty justification get through anyway, the dialog opens again with what was typed.
 */
export async function askForExport(files) {
  let values = { files };
  for (;;) {
    const body = new RequestBody(values);
    const result = await showDialog({
      title: 'Request export',
      body,
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Send request' })],
      focusNodeSelector: 'textarea',
      hasClose: true
    });
    if (!result.button.accept || !result.value) {
      return null;
    }
    if (result.value.justification) {
      return result.value;
    }
    values = { ...result.value, error: JUSTIFICATION_REQUIRED };
  }
}

const Private = { nextId: 0 };
