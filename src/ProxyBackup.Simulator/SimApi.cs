using ProxyBackup.OpenNebula;
using ProxyBackup.XmlRpc;
using ProxyBackup.XmlRpc.Server;

namespace ProxyBackup.Simulator;

/// <summary>
/// The XML-RPC face of the simulator: checks argument types as xmlrpc-c does (faults -501, -506),
/// authenticates the session, applies fault rules, and wraps results in oned's reply arrays.
/// </summary>
public sealed class SimApi
{
    private delegate object Handler(Args a, OpOutcome outcome, SimUser caller);

    /// <param name="LockLevel">The operation's auth level (2 MANAGE, 3 ADMIN) checked against a VM lock; 0 when locks do not apply.</param>
    /// <param name="VmArg">Which argument holds the VM id (one.vm.action takes the action first).</param>
    private sealed record Method(string Signature, int LockLevel, Handler Run, int VmArg = 0);

    private readonly SimCloud _cloud;
    private readonly SimFaults _faults;
    private readonly Dictionary<string, Method> _methods;

    public SimApi(SimCloud cloud, SimFaults faults)
    {
        _cloud = cloud;
        _faults = faults;
        const int Manage = 2, Admin = 3;
        _methods = new Dictionary<string, Method>(StringComparer.Ordinal)
        {
            ["one.system.version"] = new("", 0, (_, _, _) => SimCloud.Version),
            ["one.system.config"] = new("", 0, (_, _, _) => SimXml.Config().ToString(System.Xml.Linq.SaveOptions.DisableFormatting)),
            ["one.user.login"] = new("ssi|i", 0, (a, _, _) => _cloud.Login(a.S(0), a.S(1), a.I(2))),
            ["one.user.info"] = new("i|b", 0, (a, _, u) => _cloud.UserInfo(a.I(0), u.Name)),
            ["one.vm.info"] = new("i|b", 0, (a, _, _) => _cloud.VmInfo(a.I(0))),
            ["one.vmpool.info"] = new("iiii|s", 0, (a, _, _) => _cloud.VmPool(a.I(0), a.I(1), a.I(2), a.I(3), extended: false)),
            ["one.vmpool.infoextended"] = new("iiii|s", 0, (a, _, _) => _cloud.VmPool(a.I(0), a.I(1), a.I(2), a.I(3), extended: true)),
            ["one.vmpool.infoset"] = new("sb", 0, (a, _, _) => _cloud.VmPoolInfoSet(a.S(0), a.B(1))),
            ["one.vm.disksnapshotcreate"] = new("iis", Manage, (a, o, _) => _cloud.DiskSnapshotCreate(a.I(0), a.I(1), a.S(2), o)),
            ["one.vm.disksnapshotrevert"] = new("iii", Manage, (a, o, _) => _cloud.DiskSnapshotRevert(a.I(0), a.I(1), a.I(2), o)),
            ["one.vm.disksnapshotdelete"] = new("iii", Manage, (a, o, _) => _cloud.DiskSnapshotDelete(a.I(0), a.I(1), a.I(2), o)),
            ["one.vm.disksnapshotrename"] = new("iiis", Manage, (a, _, _) => _cloud.DiskSnapshotRename(a.I(0), a.I(1), a.I(2), a.S(3))),
            ["one.vm.disksaveas"] = new("iissi", Manage, (a, o, _) => _cloud.DiskSaveAs(a.I(0), a.I(1), a.S(2), a.S(3), a.I(4), o)),
            ["one.vm.attach"] = new("is", Manage, (a, o, _) => _cloud.Attach(a.I(0), a.S(1), o)),
            ["one.vm.detach"] = new("ii", Manage, (a, o, _) => _cloud.Detach(a.I(0), a.I(1), o)),
            ["one.vm.action"] = new("si", Manage, (a, o, _) => _cloud.VmAction(a.S(0), a.I(1), o), VmArg: 1),
            ["one.vm.lock"] = new("ii|b", 0, (a, _, _) => _cloud.VmLock(a.I(0), a.I(1), a.Count > 2 && a.B(2))),
            ["one.vm.unlock"] = new("i", 0, (a, _, _) => _cloud.VmUnlock(a.I(0))),
            ["one.vm.update"] = new("is|i", Manage, (a, _, _) => _cloud.VmUpdate(a.I(0), a.S(1), a.Count > 2 ? a.I(2) : 0)),
            ["one.vm.chown"] = new("iii", Manage, (a, _, u) => _cloud.Chown(OneObject.Vm, a.I(0), a.I(1), a.I(2), u)),
            ["one.image.chown"] = new("iii", 0, (a, _, u) => _cloud.Chown(OneObject.Image, a.I(0), a.I(1), a.I(2), u)),
            ["one.template.chown"] = new("iii", 0, (a, _, u) => _cloud.Chown(OneObject.Template, a.I(0), a.I(1), a.I(2), u)),
            ["one.vm.rename"] = new("is", Manage, (a, _, _) => _cloud.VmRename(a.I(0), a.S(1))),
            ["one.vm.allocate"] = new("s|b", 0, (a, _, u) => _cloud.VmAllocate(a.S(0), a.Count > 1 && a.B(1), u.Id)),
            ["one.vm.deploy"] = new("ii|bis", Admin, (a, _, _) => _cloud.VmDeploy(a.I(0), a.I(1), a.Count > 3 ? a.I(3) : -1)),
            ["one.vm.recover"] = new("ii", Admin, (a, _, _) => _cloud.VmRecover(a.I(0), a.I(1))),
            ["one.image.allocate"] = new("si|b", 0, (a, o, _) => _cloud.ImageAllocate(a.S(0), a.I(1), o)),
            ["one.image.info"] = new("i|b", 0, (a, _, _) => _cloud.ImageInfo(a.I(0))),
            ["one.image.delete"] = new("i|b", 0, (a, o, _) => _cloud.ImageDelete(a.I(0), a.Count > 1 && a.B(1), o)),
            ["one.image.persistent"] = new("ib", 0, (a, _, _) => _cloud.ImagePersistent(a.I(0), a.B(1))),
            ["one.image.update"] = new("is|i", 0, (a, _, _) => _cloud.ImageUpdate(a.I(0), a.S(1), a.Count > 2 ? a.I(2) : 0)),
            ["one.image.rename"] = new("is", 0, (a, _, _) => _cloud.ImageRename(a.I(0), a.S(1))),
            ["one.imagepool.info"] = new("iii", 0, (a, _, _) => _cloud.ImagePool(a.I(0), a.I(1), a.I(2))),
            ["one.template.allocate"] = new("s", 0, (a, _, u) => _cloud.TemplateAllocate(a.S(0), u.Id)),
            ["one.template.info"] = new("i|bb", 0, (a, _, _) => _cloud.TemplateInfo(a.I(0))),
            ["one.template.instantiate"] = new("isbs|b", 0, (a, _, u) => _cloud.TemplateInstantiate(a.I(0), a.S(1), a.B(2), a.S(3), u.Id)),
            ["one.template.rename"] = new("is", 0, (a, _, _) => _cloud.TemplateRename(a.I(0), a.S(1))),
            ["one.template.delete"] = new("i|b", 0, (a, _, _) => _cloud.TemplateDelete(a.I(0), a.Count > 1 && a.B(1))),
            ["one.templatepool.info"] = new("iii", 0, (a, _, _) => _cloud.TemplatePool(a.I(0), a.I(1), a.I(2))),
            ["one.datastore.update"] = new("is|i", 0, (a, _, _) => _cloud.DatastoreUpdate(a.I(0), a.S(1), a.Count > 2 ? a.I(2) : 0)),
            ["one.datastore.info"] = new("i|b", 0, (a, _, _) => _cloud.DatastoreInfo(a.I(0))),
            ["one.datastorepool.info"] = new("", 0, (_, _, _) => _cloud.DatastorePool()),
            ["one.host.allocate"] = new("sssi", 0, (a, _, _) => _cloud.HostAllocate(a.S(0), a.S(1), a.S(2))),
            ["one.host.status"] = new("ii", 0, (a, _, _) => _cloud.HostStatus(a.I(0), a.I(1))),
            ["one.host.info"] = new("i|b", 0, (a, _, _) => _cloud.HostInfo(a.I(0))),
            ["one.hostpool.info"] = new("", 0, (_, _, _) => _cloud.HostPool()),
            // Control methods of the simulator itself (oneadmin only): not part of OpenNebula's API.
            ["sim.vm.mutate"] = new("iii|ii", 0, (a, _, _) => (int)Math.Min(int.MaxValue, _cloud.MutateDisk(a.I(0), a.I(1), a.I(2), a.Count > 3 ? a.I(3) : 65536, a.Count > 4 ? a.I(4) : Environment.TickCount))),
            ["sim.vm.diskpath"] = new("ii", 0, (a, _, _) => _cloud.DiskContentPath(a.I(0), a.I(1))),
            ["sim.inventory"] = new("", 0, (_, _, _) => _cloud.Inventory()),
            ["sim.devices"] = new("i", 0, (a, _, _) => (_cloud.ProxyDisks as SimDevices)?.DirectoryOf(a.I(0)) ?? ""),
            ["sim.faults.set"] = new("s", 0, (a, _, _) => { _faults.Set(FaultPlan.FromJson(a.S(0)).Rules); return true; }),
            ["sim.faults.clear"] = new("", 0, (_, _, _) => { _faults.Set([]); return true; }),
            ["sim.stuck.end"] = new("|b", 0, (a, _, _) => _cloud.EndStuckOperations(a.Count > 0 && a.B(0))),
        };
    }

    public async Task<object?> HandleAsync(XmlRpcCall call, CancellationToken ct)
    {
        if (!_methods.TryGetValue(call.MethodName, out var method))
            throw new XmlRpcFaultException(XmlRpcFaultException.NoSuchMethod, $"Method '{call.MethodName}' not defined");
        var args = Args.Check(call.Parameters, method.Signature);
        var decision = _faults.Decide(call.MethodName);
        if (decision.LatencyMs > 0) await Task.Delay(decision.LatencyMs, ct).ConfigureAwait(false);
        if (decision.Action == FaultAction.DropBefore) throw new XmlRpcDropConnectionException();
        object?[] reply;
        var caller = _cloud.Authenticate((string)call.Parameters[0]!);
        if (caller is null)
            reply = Failure(call.MethodName, OneErrorCode.Authentication, "User couldn't be authenticated, aborting call.", -1);
        else if (call.MethodName.StartsWith("sim.", StringComparison.Ordinal) && caller.Id != 0)
            reply = Failure(call.MethodName, OneErrorCode.Authorization, "Only oneadmin may drive the simulator.", -1);
        else if (decision.Action == FaultAction.Error)
            reply = Failure(call.MethodName, decision.Code, decision.Message ?? "Injected failure.", -1);
        else
        {
            var outcome = decision.Action switch
            {
                FaultAction.Stuck => OpOutcome.Stuck,
                FaultAction.FailAsync => OpOutcome.FailAsync,
                _ => OpOutcome.Succeed,
            };
            try
            {
                if (method.LockLevel > 0) _cloud.CheckLock(args.I(method.VmArg), method.LockLevel, call.MethodName);
                reply = [true, method.Run(args, outcome, caller), 0];
            }
            catch (SimFailure f)
            {
                reply = Failure(call.MethodName, f.Code, f.Message, f.ObjectId);
            }
        }
        if (decision.Action == FaultAction.DropAfter) throw new XmlRpcDropConnectionException();
        return reply;
    }

    private static object?[] Failure(string method, OneErrorCode code, string message, int objectId) =>
        [false, $"[{method}] {message}", (int)code, objectId, -1L];

    /// <summary>Arguments after the session, checked against a signature like "iis|b" (mandatory | optional).</summary>
    private sealed class Args
    {
        private readonly IReadOnlyList<object?> _values;

        private Args(IReadOnlyList<object?> values) => _values = values;

        public int Count => _values.Count;
        public int I(int i) => (int)_values[i]!;
        public string S(int i) => (string)_values[i]!;
        public bool B(int i) => (bool)_values[i]!;

        public static Args Check(IReadOnlyList<object?> parameters, string signature)
        {
            if (parameters.Count == 0 || parameters[0] is not string)
                throw new XmlRpcFaultException(XmlRpcFaultException.TypeMismatch, parameters.Count == 0 ? "Not enough parameters" : "Parameter that is supposed to be string is not");
            var parts = signature.Split('|');
            var mandatory = parts[0];
            var all = mandatory + (parts.Length > 1 ? parts[1] : "");
            var values = parameters.Skip(1).ToList();
            if (values.Count < mandatory.Length) throw new XmlRpcFaultException(XmlRpcFaultException.TypeMismatch, "Not enough parameters");
            if (values.Count > all.Length) throw new XmlRpcFaultException(XmlRpcFaultException.TypeMismatch, "Too many parameters");
            for (var i = 0; i < values.Count; i++)
            {
                var ok = all[i] switch
                {
                    'i' => values[i] is int,
                    's' => values[i] is string,
                    'b' => values[i] is bool,
                    _ => false,
                };
                if (!ok)
                {
                    var kind = all[i] switch { 'i' => "integer", 's' => "string", _ => "boolean" };
                    throw new XmlRpcFaultException(XmlRpcFaultException.TypeMismatch, $"Parameter that is supposed to be {kind} is not");
                }
            }
            return new Args(values);
        }
    }
}
