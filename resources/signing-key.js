/* global window, RED */
/*
 * The signing key's rules in the edit dialogs of guardrail and actuator-out, as the nodes check them
 * at deploy (MIN_SIGNING_KEY_LENGTH in lib/device/signing.ts). Node-RED loads this file (from the
 * package's resources/ folder) before the nodes' own editor scripts run.
 */
(function () {
  'use strict';
  if (window.EdgeLlmSigningKey) return;
  var MIN_KEY_LENGTH = 32;

  window.EdgeLlmSigningKey = {
    /** The `validate` functions of a node type's key: its credential, and the key the node holds. */
    validators: function (type) {
      var errors = 'node-red-contrib-edge-llm/' + type + ':' + type + '.errors.';
      function keyProblem(key) {
        if (!key) return RED._(errors + 'no-key');
        if (key.length < MIN_KEY_LENGTH) {
          return RED._(errors + 'short-key', { length: key.length, min: MIN_KEY_LENGTH });
        }
        return true;
      }
      return {
        // Two parameters: only then does Node-RED show a returned string as the reason.
        field: function (v, _opt) {
          return v === '__PWRD__' || keyProblem(v);
        },
        /*
         * Node-RED checks credentials only in the open dialog: this default holds nothing and checks
         * the key the node holds, so that a node saved without a key (or with a short one) shows the
         * red triangle. A node deployed before has its key on the server (not sent to the editor): it
         * counts as set until its dialog says otherwise; a new or imported one needs one.
         */
        held: function (_v, _opt) {
          var c = this.credentials;
          if (!c) return this.changed ? keyProblem('') : true;
          if (c.signingKey === undefined || c.signingKey === '' || c.signingKey === '__PWRD__') {
            return c.has_signingKey ? true : keyProblem('');
          }
          return keyProblem(c.signingKey);
        },
      };
    },
  };
})();
