using ProxyBackup.OpenNebula;

namespace ProxyBackup.Simulator;

/// <summary>A refusal as oned sends it: error code, message (without the method prefix), object id.</summary>
public sealed class SimFailure(OneErrorCode code, string message, int objectId = -1) : Exception(message)
{
    public OneErrorCode Code { get; } = code;
    public int ObjectId { get; } = objectId;
}
