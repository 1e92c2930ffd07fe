"""Synthetic dual-energy X-ray baggage scans with COCO boxes (the ``dfss-synth`` generator).

Objects are built from parts (material + thickness), rasterised into attenuation patches, composed
along the beam with Beer–Lambert at 60 and 100 keV, and coloured with the security-scanner palette.
Entry points: :func:`dfss.synth.writer.generate`, :func:`dfss.synth.config.load_preset`, ``dfss-synth``.
"""
