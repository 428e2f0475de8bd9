<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22" styleCategories="AllStyleCategories">
  <pipe>
    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" nodataColor="">
      <rasterTransparency/>
      <colorPalette>
        <paletteEntry value="0" color="#000000" alpha="0" label="0 No data"/>
        <paletteEntry value="1" color="#ff0000" alpha="255" label="1 Saturated or defective"/>
        <paletteEntry value="2" color="#2f2f2f" alpha="255" label="2 Dark area pixels"/>
        <paletteEntry value="3" color="#643200" alpha="255" label="3 Cloud shadows"/>
        <paletteEntry value="4" color="#00a000" alpha="255" label="4 Vegetation"/>
        <paletteEntry value="5" color="#ffe65a" alpha="255" label="5 Not vegetated"/>
        <paletteEntry value="6" color="#0000ff" alpha="255" label="6 Water"/>
        <paletteEntry value="7" color="#808080" alpha="255" label="7 Unclassified"/>
        <paletteEntry value="8" color="#c0c0c0" alpha="255" label="8 Cloud medium probability"/>
        <paletteEntry value="9" color="#ffffff" alpha="255" label="9 Cloud high probability"/>
        <paletteEntry value="10" color="#64c8ff" alpha="255" label="10 Thin cirrus"/>
        <paletteEntry value="11" color="#ff96ff" alpha="255" label="11 Snow or ice"/>
      </colorPalette>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation saturation="0" grayscaleMode="0" colorizeOn="0"/>
    <rasterresampler maxOversampling="2"/>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
